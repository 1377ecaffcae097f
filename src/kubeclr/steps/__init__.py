"""Step functions: what each pipeline component calls, one call per step."""

# The six steps of the pipeline, in DAG order (docs/architecture.md).
STEPS = ("download_split", "compute_stats", "pretrain", "extract_features", "linear_eval", "report")
# Every task with a component: the data source's fingerprint (the data step's cache key), the
# steps, and the regression gate that fails the run after the report when the gate failed.
TASKS = ("fingerprint", *STEPS, "regression_gate")
