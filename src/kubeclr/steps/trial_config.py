"""The ``trial_config`` task of a sweep: one trial's resolved config, checkpoint scope and name.

A sweep's ParallelFor hands each iteration ``{"index": i, "overrides": {key: value}}``
(:meth:`kubeclr.config.sweep.Sweep.items`); this task applies the overrides to the run's
resolved config, so the trial's pretrain, extract_features and linear_eval share one config
and one digest. Its checkpoints go under ``<scope>/trial-NN-<digest>``: a retried trial resumes
its own, and no two trials (or two configs) ever share one.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from kubeclr.config import Config, config_digest
from kubeclr.config.sweep import trial_config

log = logging.getLogger(__name__)


def trial_name(index: int) -> str:
    return f"trial-{index:02d}"


def run(cfg: Config, trial: Mapping[str, Any], *, checkpoint_scope: str, run_name: str) -> tuple[dict, str, str]:
    """Return the trial's ``(config, checkpoint scope, run name)``.

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
    return resolved.to_dict(), scope, f"{run_name}-{trial_name(index)}"
