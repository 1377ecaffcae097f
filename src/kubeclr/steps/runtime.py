"""What every component does around its one library call.

A component passes the ``config`` it received (its task's slice, or the whole
resolved config) here; this module builds the step's view of it
(:func:`kubeclr.config.task_view`), logs its digest, sets
up logging and step metrics, keeps torch's threads within the container's CPU
limit, runs the step, and turns a :class:`UserError` into
one clear line and a non-zero exit (no traceback for user errors, in a pod or
locally). Locally, the step also leaves that line (or, for an unexpected error,
its type and first line) in :data:`ERROR_FILE_ENV`, for the CLI's last line.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from kubeclr.config import config_digest, task_view
from kubeclr.cpus import cap_torch_threads
from kubeclr.errors import UserError
from kubeclr.progress import setup_logging
from kubeclr.telemetry.prometheus import step_metrics

log = logging.getLogger(__name__)

# The run name of a cached step when the run_name parameter is '': a cached task never takes the KFP
# run's own name, which differs every run and would make every run a cache miss.
UNNAMED_RUN = "unnamed"
# Where a failing step leaves its one-line cause for the local runner to print.
ERROR_FILE_ENV = "KUBECLR_ERROR_FILE"


def run_step(
    step: str,
    fn: Callable[..., Any],
    config: Mapping[str, Any],
    *args: Any,
    run_name: str,
    job_name: str = "",
    **kwargs: Any,
) -> Any:
    """Run ``fn(cfg, *args, **kwargs)`` as pipeline step ``step``.

    Args:
        step: the step's name (logs, metrics, error messages).
        fn: the step function (``kubeclr.steps.<step>.run``).
        config: the ``config`` the component received: its task's slice (a cached task: the
            keys its step ``READS``) or the whole resolved config.
        run_name: the run's name; '' = ``job_name``, the KFP run's own (a task that is never
            cached), or :data:`UNNAMED_RUN`. Labels logs and metrics; handed on to ``fn`` when
            it takes a ``run_name``.
        job_name: the KFP run's name ('' in a cached task).
    """
    setup_logging()
    run_name = run_name or job_name or UNNAMED_RUN
    try:
        cfg = task_view(config, origin="config")
        log.info("%s: config sha256 %s", step, config_digest(cfg))
        if "run_name" in inspect.signature(fn).parameters:
            kwargs["run_name"] = run_name
        cap_torch_threads()
        with step_metrics(cfg.metrics, run_name, step):
            return fn(cfg, *args, **kwargs)
    except UserError as exc:
        _fail(step, exc)
    except Exception as exc:  # a bug, not bad input: the traceback stays; the local runner still gets one line
        _leave_cause(_unexpected(step, exc))
        raise


def _fail(step: str, exc: UserError) -> None:
    """Log a user error as one line, leave it for the local runner, exit non-zero."""
    message = f"{step}: {exc}"
    log.error(message)
    _leave_cause(message)
    sys.exit(exc.exit_code)


def _leave_cause(message: str) -> None:
    """Write the step's one-line cause where the local runner reads it (:data:`ERROR_FILE_ENV`; unset in a pod)."""
    error_file = os.environ.get(ERROR_FILE_ENV)
    if error_file:
        Path(error_file).write_text(message + "\n")


def _unexpected(step: str, exc: Exception) -> str:
    """``step: Type: first line of the message (…)``: what the local runner prints for an unexpected error."""
    lines = str(exc).strip().splitlines()
    what = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return f"{step}: {what} (unexpected: the step's traceback is in its log above)"


def run_task(step: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` as a task that has no resolved config yet (``resolve_config``, which makes it).

    Logging is set up and a :class:`UserError` ends the task as a step's would: one line, non-zero exit.
    """
    setup_logging()
    try:
        return fn(*args)
    except UserError as exc:
        _fail(step, exc)
    except Exception as exc:
        _leave_cause(_unexpected(step, exc))
        raise
