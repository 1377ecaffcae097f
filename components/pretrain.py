"""Component of the ``pretrain`` step (GPU)."""

from kfp.dsl import Dataset, Input, Model, Output


def pretrain(
    config: dict,
    train: Input[Dataset],
    stats: Input[Dataset],
    gpus: int,
    nodes: int,
    checkpoint_scope: str,
    run_name: str,
    job_name: str,
    encoder: Output[Model],
    history: Output[Dataset],
):
    """SimCLR pretraining: ResNet encoder + projection head, NT-Xent, LARS.

    Args:
        config: the run's resolved config (from ``download_split``).
        train: the train split.
        stats: normalisation statistics of the train split.
        gpus: GPUs per node; more than one trains with torchrun in this pod.
        nodes: nodes; more than one launches a TrainJob or PyTorchJob (``cluster.engine``).
        checkpoint_scope: sub-folder of ``storage.checkpoint_uri`` for this run (the KFP
            run ID on a cluster: task retries resume, the next scheduled run
            starts fresh); '' = checkpoint_uri itself.
        run_name: the run's name ('' = the KFP run's own name).
        job_name: the KFP run's name (filled in by the pipeline).
        encoder: the encoder's state dict (``encoder.pt``).
        history: per-epoch loss, lr, throughput and the run summary (JSON).
    """
    from kubeclr.steps import pretrain, runtime

    runtime.run_step(
        "pretrain",
        pretrain.run,
        config,
        train.path,
        stats.path,
        encoder.path,
        history.path,
        run_name=run_name or job_name,
        checkpoint_scope=checkpoint_scope,
        gpus=gpus,
        nodes=nodes,
    )
