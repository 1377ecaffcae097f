"""Component of the ``regression_gate`` task (CPU): fails the run when the report's gate failed."""

from kfp.dsl import Dataset, Input


def regression_gate(config: dict, metrics_json: Input[Dataset], run_name: str, job_name: str):
    """Fail the run when the regression gate failed (``gate.action=fail``); pass otherwise.

    Runs after the report step, which always succeeds so that its report, summary and
    metrics.json are uploaded and readable on the run page.

    Args:
        config: the run's resolved config (from ``download_split``).
        metrics_json: the report step's ``metrics.json`` (its ``gate`` block).
        run_name: the run's name ('' = the KFP run's own name).
        job_name: the KFP run's name (filled in by the pipeline).
    """
    from kubeclr.steps import regression_gate, runtime

    runtime.run_step("regression_gate", regression_gate.run, config, metrics_json.path, run_name=run_name or job_name)
