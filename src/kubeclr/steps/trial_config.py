"""The ``trial_config`` task of a sweep: one trial's resolved config, checkpoint scope and name.

A sweep's ParallelFor hands each iteration ``{"index": i, "overrides": {key: value}}``
(:meth:`kubeclr.config.sweep.Sweep.items`); this task applies the overrides to the run's
resolved config and hands the trial's pretrain, extract_features and linear_eval their slices of
that one config (:data:`TRIAL_TASKS`). Its checkpoints go under ``<scope>/trial-NN-<digest>``: a retried trial resumes
its own, and no two trials (or two configs) ever share one.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from kubeclr.config import Config, config_digest, config_slice
from kubeclr.config.sweep import trial_config
from kubeclr.steps import reads

log = logging.getLogger(__name__)

TRIAL_TASKS = ("pretrain", "extract_features", "linear_eval")  # what a trial runs, each given its slice


def trial_name(index: int) -> str:
    return f"trial-{index:02d}"


def run(cfg: Config, trial: Mapping[str, Any], *, checkpoint_scope: str, run_name: str) -> tuple:
    """Return the trial's ``(*one config slice per task of TRIAL_TASKS, checkpoint scope, run name)``.

    Args:
        cfg: the run's resolved config (shared by every trial).
        trial: ``index`` and ``overrides`` (KFP hands numbers over as floats: the index is rounded).
        checkpoint_scope: the run's scope ('' = ``storage.checkpoint_uri`` itself).
        run_name: the run's name; the trial's is ``<run_name>-trial-NN``.

    Raises:
        ConfigError: an override that does not apply (an unknown key, a bad value).
    """
    index = int(trial["index"])
    overrides = dict(trial["overrides"])
    resolved = trial_config(cfg, overrides, origin=trial_name(index))
    digest = config_digest(resolved)
    scope = "/".join(s for s in (checkpoint_scope, f"{trial_name(index)}-{digest[:12]}") if s)
    log.info("%s: %s (config sha256 %s)", trial_name(index), overrides or "the base config", digest)
    slices = [config_slice(resolved, reads(task) or ()) for task in TRIAL_TASKS]
    return (*slices, scope, f"{run_name}-{trial_name(index)}")
