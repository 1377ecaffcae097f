"""KFP components, one module per pipeline step.

Each module holds one plain, typed Python function with a docstring for every
parameter and one call into the library (``kubeclr.steps.<step>.run`` through
:func:`kubeclr.steps.runtime.run_step`). :func:`build` turns them into
lightweight KFP components on the project image, with
``install_kfp_package=False``: nothing is pip-installed at run time, so
air-gapped clusters work and ``kfp.local.SubprocessRunner`` runs them as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kfp import dsl

from kubeclr import IMAGE
from kubeclr.components import (
    compute_stats,
    deploy_model,
    download_split,
    export_model,
    extract_features,
    fingerprint,
    leaderboard,
    linear_eval,
    pretrain,
    register_model,
    regression_gate,
    report,
    trial_config,
)
from kubeclr.errors import UserError


@dataclass(frozen=True)
class Components:
    """The six step components, the data source's fingerprint, the model's export, deployment and
    registration, the regression gate and a sweep's trial config and leaderboard, all on one image."""

    fingerprint: Any
    download_split: Any
    compute_stats: Any
    pretrain: Any
    extract_features: Any
    linear_eval: Any
    export_model: Any
    deploy_model: Any
    register_model: Any
    report: Any
    regression_gate: Any
    trial_config: Any
    leaderboard: Any


def build(image: str = IMAGE) -> Components:
    """Wrap every step function as a KFP component running on ``image``."""
    if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
        raise UserError(f"image {image!r} must carry a pinned tag or digest, never :latest")

    def make(func):
        return dsl.component(func, base_image=image, install_kfp_package=False)

    return Components(
        fingerprint=make(fingerprint.fingerprint),
        download_split=make(download_split.download_split),
        compute_stats=make(compute_stats.compute_stats),
        pretrain=make(pretrain.pretrain),
        extract_features=make(extract_features.extract_features),
        linear_eval=make(linear_eval.linear_eval),
        export_model=make(export_model.export_model),
        deploy_model=make(deploy_model.deploy_model),
        register_model=make(register_model.register_model),
        report=make(report.report),
        regression_gate=make(regression_gate.regression_gate),
        trial_config=make(trial_config.trial_config),
        leaderboard=make(leaderboard.leaderboard),
    )
