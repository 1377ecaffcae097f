"""Component of the ``pretrain`` step (GPU)."""

from kfp.dsl import Dataset, Input, Model, Output


def pretrain(train: Input[Dataset], stats: Input[Dataset], data_config: dict, model_config: dict,
             augment_config: dict,
             pretrain_config: dict, metrics_config: dict, arch: str, epochs: int, batch_size: int,
             lr: float, temperature: float, gpus: int, nodes: int, checkpoint_uri: str, checkpoint_scope: str,
             run_name: str, job_name: str, encoder: Output[Model], history: Output[Dataset]):
    """SimCLR pretraining: ResNet encoder + projection head, NT-Xent, LARS.

    Args:
        train: the train split.
        stats: normalisation statistics of the train split.
        data_config: the ``data`` config section (its seed picks the kNN monitor's held-out images).
        model_config: the ``model`` config section (width, stem, head, …).
        augment_config: the ``augment`` config section (crop scale, colour strength, …).
        pretrain_config: the ``pretrain`` config section (optimizer, warm-up, precision, …).
        metrics_config: the ``metrics`` config section (Pushgateway URL, /metrics port).
        arch: resnet18, resnet34 or resnet50.
        epochs: pretraining epochs.
        batch_size: global batch size (all GPUs together).
        lr: base learning rate (scaled by batch/256 when lr_scaling is linear).
        temperature: NT-Xent temperature.
        gpus: GPUs per node; more than one trains with torchrun in this pod.
        nodes: nodes; more than one launches a Training Operator PyTorchJob.
        checkpoint_uri: file:// or s3:// prefix; a retried pod resumes from
            the newest complete checkpoint there ('' = no checkpoints).
        checkpoint_scope: sub-folder of checkpoint_uri for this run (the KFP
            run ID on a cluster: task retries resume, the next scheduled run
            starts fresh); '' = checkpoint_uri itself.
        run_name: the run's name ('' = the KFP run's own name).
        job_name: the KFP run's name (filled in by the pipeline).
        encoder: the encoder's state dict (``encoder.pt``).
        history: per-epoch loss, lr, throughput and the run summary (JSON).
    """
    from kubeclr.steps import pretrain as step, runtime

    runtime.run_step("pretrain", run_name or job_name, step.pretrain,
                     {"data": data_config, "model": model_config, "augment": augment_config,
                      "pretrain": pretrain_config, "metrics": metrics_config},
                     {"model.arch": arch, "pretrain.epochs": epochs, "pretrain.batch_size": batch_size,
                      "pretrain.lr": lr, "pretrain.temperature": temperature},
                     train.path, stats.path, encoder.path, history.path,
                     run_name=run_name or job_name, checkpoint_uri=checkpoint_uri,
                     checkpoint_scope=checkpoint_scope, gpus=gpus, nodes=nodes)
