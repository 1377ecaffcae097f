"""Component of a sweep's ``leaderboard`` step (CPU)."""

from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output


def leaderboard(
    config: dict,
    sweep: dict,
    histories: Input[list[Dataset]],
    results: Input[list[Dataset]],
    encoders: Input[list[Model]],
    run_name: str,
    job_name: str,
    html: Output[HTML],
    summary: Output[Markdown],
    metrics: Output[Metrics],
    leaderboard_json: Output[Dataset],
    encoder: Output[Model],
):
    """Rank the sweep's trials on validation; the winner's test accuracy is the headline.

    Args:
        config: the run's resolved config (from ``download_split``), every trial's base.
        sweep: the selection metric, whether seeds are swept, and the trials (fixed at compile time).
        histories: every trial's pretraining history (collected from the ParallelFor).
        results: every trial's linear-eval and kNN results (collected).
        encoders: every trial's encoder (collected); the winner's becomes ``encoder``.
        run_name: the sweep's name ('' = the KFP run's own name).
        job_name: the KFP run's name (filled in by the pipeline).
        html: the leaderboard page (table, accuracy-vs-parameter charts, each trial's config).
        summary: the Markdown leaderboard, rendered on the run page.
        metrics: the winner's numbers and the number of trials, for the run page.
        leaderboard_json: ``leaderboard.json`` (trials, ranking, winner, headline).
        encoder: the winning trial's encoder, bit for bit.
    """
    from kubeclr.steps import leaderboard, runtime

    outputs = {
        "leaderboard.json": leaderboard_json.path,
        "leaderboard.html": html.path,
        "leaderboard.md": summary.path,
        "encoder.pt": encoder.path,
    }
    runtime.run_step(
        "leaderboard",
        leaderboard.run,
        config,
        sweep,
        [a.path for a in histories],
        [a.path for a in results],
        [a.path for a in encoders],
        outputs,
        run_name=run_name or job_name,
        metrics=metrics,
    )
