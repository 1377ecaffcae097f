"""Step functions: what each pipeline component calls, one call per step."""

# The six steps of the pipeline, in DAG order (docs/architecture.md).
STEPS = ("download_split", "compute_stats", "pretrain", "extract_features", "linear_eval", "report")
# Every task with a component: the data source's fingerprint (the data step's cache key), the
# steps, the model's export for serving, deployment (compile --deploy) and registration, the regression gate
# that fails the run after the report when the gate failed, and a sweep's per-trial config and its
# leaderboard (which take the report's and the gate's place).
TASKS = (
    "fingerprint",
    *STEPS,
    "export_model",
    "deploy_model",
    "register_model",
    "regression_gate",
    "trial_config",
    "leaderboard",
)
