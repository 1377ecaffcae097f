"""The pipeline: its DAG (:mod:`.simclr`, wiring only), its task settings (:mod:`.tasks`), its IR file (:mod:`.ir`).

What a default run executes is named here, without importing kfp, so that ``run --help`` and the
README can say it in the same words; tests/unit/test_pipeline_compile.py checks it against the
compiled DAG.
"""

from kubeclr.steps import STEPS

# The tasks around the six steps: the config's one resolution before them (with the data source's
# fingerprint, the data step's cache key), the export for serving and the regression gate after them.
# `compile --deploy` adds deploy_model, a registry.url register_model; a sweep runs trial_config and
# leaderboard instead of the report, the export and the gate.
BEFORE_STEPS = ("resolve_config",)
AFTER_STEPS = ("export_model", "regression_gate")
RUN_TASKS = (*BEFORE_STEPS, *STEPS, *AFTER_STEPS)

_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")


def run_tasks_text() -> str:
    """What a default run executes, in words: ``run --help`` and the README say exactly this."""
    *first, last = (*BEFORE_STEPS, *AFTER_STEPS)
    return (
        f"{_WORDS[len(RUN_TASKS)]} tasks: the {_WORDS[len(STEPS)]} ML steps ({', '.join(STEPS)}) "
        f"plus {', '.join(first)} and {last}"
    )
