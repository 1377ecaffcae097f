"""Training health: did the contrastive loss leave chance, and did the features beat random ones?

NT-Xent over a global batch of B images contrasts each of the 2B views with
the 2B − 1 others, so an encoder whose embeddings carry no information scores
every candidate alike and the loss sits at ``log(2B − 1)`` (Chen et al. 2020,
arXiv:2002.05709, eq. 1). A loss that has not dropped :data:`MARGIN` below that
after a quarter of the schedule means the run is not learning: the usual cause
is a learning rate far too low for the batch and the schedule (linear scaling at
a small batch; SimCLR App. B.1 recommends square-root scaling there).

A loss that falls is not enough: the encoder can learn a shortcut that matches
the two views without separating the classes. With the kNN monitor on, every run
measures its own baseline, the monitor on its encoder before the first step
(epoch 0); a run whose final kNN top-1 is not above that is ``below-random-init``.

The monitor also records the effective rank of its features (RankMe,
:mod:`kubeclr.eval.representation`). A run whose features fold into a few
directions is ``collapsing``: its final RankMe is under :data:`COLLAPSE_FRACTION`
of the feature dimension (at least 2), or it fell at each of the last
:data:`FALLING_POINTS` measurements to under half its peak.

Verdicts (``status``), in metrics.json after the last epoch: ``healthy``,
``slow-start`` (the loss left chance only after the check epoch; the log warned),
``not-learning``, ``below-random-init``, ``collapsing``; ``too-early`` only mid-run,
before :func:`check_epoch`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from kubeclr.config import Config
from kubeclr.core.model import feature_dim
from kubeclr.core.optim import scaled_lr, warmup_length

MARGIN = 0.01  # the loss must drop 1% below chance
CHECK_FRACTION = 0.25  # judged once a quarter of the epochs are done
# RankMe under this fraction of the feature dimension is collapse; a random ResNet-18 of width 32 measures
# ~5% (12.6 of 256 on the digits), a trained one far more, a collapsed one ~1
COLLAPSE_FRACTION = 0.02
FALLING_POINTS = 4  # RankMe falling at each of this many monitor measurements in a row, to half its peak
# every verdict, in order of severity (its index is the KFP metric pretrain_health_status)
STATUSES = ("healthy", "slow-start", "not-learning", "below-random-init", "collapsing")
WARN_STATUSES = frozenset({"not-learning", "below-random-init", "collapsing"})  # a warning in the log and report


def chance_loss(batch_size: int) -> float:
    """NT-Xent of uninformative embeddings: ``log(2B - 1)`` for a global batch of ``B`` images."""
    return math.log(2 * batch_size - 1)


def check_epoch(epochs: int, warmup_epochs: float = 0.0) -> int:
    """The first epoch (1-based) at which health is judged.

    A quarter of the schedule, but never inside the warm-up, where the loss of
    a healthy run can still sit at (or above) chance; at most the last epoch.
    """
    return min(epochs, max(1, math.ceil(CHECK_FRACTION * epochs), math.floor(warmup_epochs) + 1))


def _against_chance(loss: float, chance: float) -> str:
    """'4.458 is 7.6% above chance 4.143' — where a loss stands, in the words the rule uses."""
    rel = loss / chance - 1
    side = "above" if rel > 0 else "below"
    return f"{loss:.3f} is {100 * abs(rel):.1f}% {side} chance log(2B-1) = {chance:.3f}"


def training_health(
    losses: Sequence[float],
    *,
    epochs: int,
    batch_size: int,
    peak_lr: float,
    lr_scaling: str,
    warmup_epochs: float = 0.0,
    optimizer: str = "lars",
) -> dict[str, Any]:
    """Judge the per-epoch mean losses of a run so far.

    The rule: from :func:`check_epoch` on, the latest loss must be more than
    :data:`MARGIN` below chance, ``loss < (1 - MARGIN) * log(2B - 1)``.

    Args:
        losses: mean loss of each finished epoch, in order.
        epochs: epochs of the whole schedule.
        batch_size: the global batch B.
        peak_lr: the learning rate after warm-up (after scaling).
        lr_scaling: the scaling rule that produced ``peak_lr`` (for the advice).
        warmup_epochs: length of the warm-up in epochs (steps / steps per epoch).
        optimizer: the optimiser's name (for the advice).

    Returns:
        ``{"status", "chance_loss", "loss", "epoch", "message"}``; ``status`` is
        ``"too-early"`` before :func:`check_epoch`, then ``"healthy"``,
        ``"slow-start"`` (below the bar now, but not yet at some epoch from the
        check epoch on, when the log warned) or ``"not-learning"`` (the latest
        loss is not 1% below chance); ``message`` says what was seen and, unless
        healthy, the likely causes.
    """
    chance = chance_loss(batch_size)
    done = len(losses)
    latest = float(losses[-1]) if losses else float("nan")
    out = {"chance_loss": chance, "loss": latest, "epoch": done}
    first = check_epoch(epochs, warmup_epochs)
    bar = (1 - MARGIN) * chance
    if done < first:
        return {**out, "status": "too-early", "message": f"judged after epoch {first}"}
    if latest < bar:
        message = f"loss {_against_chance(latest, chance)}"
        stalled = [e for e in range(first, done + 1) if losses[e - 1] >= bar]
        if not stalled:
            return {**out, "status": "healthy", "message": message}
        # the log warned then; say so here too, so the report and the log agree
        message += (
            f"; it stayed short of {100 * MARGIN:.0f}% below chance until epoch {stalled[-1]} of {epochs} "
            f"(a slow start: {_causes(optimizer, peak_lr, lr_scaling)})"
        )
        return {**out, "status": "slow-start", "message": message}
    return {
        **out,
        "status": "not-learning",
        "message": f"not learning: after {done} of {epochs} epochs the loss {_against_chance(latest, chance)}; "
        f"learning means more than {100 * MARGIN:.0f}% below it; likely causes: "
        f"{_causes(optimizer, peak_lr, lr_scaling)}",
    }


def _causes(optimizer: str, peak_lr: float, lr_scaling: str) -> str:
    """The usual reasons a contrastive loss stays at chance, with the advice that fits this run's optimiser."""
    if optimizer == "lars" and lr_scaling != "sqrt":
        fix = (
            "for small batches and short schedules SimCLR App. B.1 uses lr_scaling=sqrt with lr=1.2, "
            "i.e. 0.075 x sqrt(B)"
        )
    else:
        fix = "raise pretrain.lr"
    return (
        f"a learning rate too low for the batch and schedule (peak lr {peak_lr:.3g} with {optimizer}, "
        f"lr_scaling={lr_scaling}; {fix}), a warm-up that fills most of the run, or views so distorted "
        "that they share nothing"
    )


# weight decay above which the advice names it, per optimiser: 10x SimCLR's 1e-6 with LARS (Sec. 4 / App. B.9),
# the top of the usual range with SGD, and AdamW's decoupled decay far above its usual 0.05
HIGH_WEIGHT_DECAY = {"lars": 1e-5, "sgd": 5e-4, "adamw": 0.1}


def recipe_causes(cfg: Config) -> list[str]:
    """What in this recipe can make training lose to a random encoder, each with its fix (none may apply).

    Each test looks at one setting against the range SimCLR (arXiv:2002.05709) trains well with.
    """
    pc, aug = cfg.pretrain, cfg.augment
    causes = []
    if aug.color_strength < 0.5 or aug.color_p < 0.5:
        causes.append(
            f"weak colour distortion (augment.color_strength={aug.color_strength:g}, color_p={aug.color_p:g}): the "
            "views can be matched by their colour histograms, a shortcut the classes do not share (SimCLR Sec. 3 "
            "and Fig. 5; s=0.5 on CIFAR-10, App. B.9)"
        )
    if aug.crop_scale[0] > 0.5:
        causes.append(
            f"large crops only (augment.crop_scale={list(aug.crop_scale)}): views that overlap almost entirely are "
            "matched by low-level detail; SimCLR crops down to 0.08 of the image"
        )
    if not 0.1 <= pc.temperature <= 0.5:
        causes.append(
            f"pretrain.temperature={pc.temperature:g}, outside the 0.1-0.5 SimCLR trains best with (Table 5; "
            "0.5 on CIFAR-10): "
            + ("a high one weighs the hard negatives too little" if pc.temperature > 0.5 else "a low one is unstable")
        )
    if pc.weight_decay > HIGH_WEIGHT_DECAY.get(pc.optimizer, math.inf):
        causes.append(
            f"pretrain.weight_decay={pc.weight_decay:g} with {pc.optimizer}, far above the usual "
            "(SimCLR: 1e-6 with LARS): the decay can shrink the encoder faster than the loss trains it"
        )
    if cfg.model.head == "linear":
        causes.append(
            "model.head=linear: without SimCLR's non-linear projection head the loss shapes the encoder's features "
            "themselves and discards what the classes need (Sec. 4.2, Fig. 8); use model.head=mlp"
        )
    peak, paper = scaled_lr(pc), max(0.3 * pc.batch_size / 256, 0.075 * math.sqrt(pc.batch_size))
    if pc.optimizer in ("lars", "sgd") and peak > 2 * paper:
        causes.append(
            f"peak lr {peak:.3g}, over twice SimCLR's {paper:.3g} for batch {pc.batch_size} (0.3 x B/256 or "
            "0.075 x sqrt(B), App. B.1): large early steps can wreck the random features before the loss pays back"
        )
    return causes


def against_init(
    health: dict[str, Any], *, knn_init: float | None, knn_final: float | None, causes: Sequence[str] = ()
) -> dict[str, Any]:
    """``health`` (a :func:`training_health` verdict of a finished run) judged against the run's own epoch 0.

    The rule: with the kNN monitor on, the final kNN top-1 must be above ``knn_init``, the monitor
    on this run's encoder before the first step; otherwise the status is ``below-random-init``.
    An initial score of 1 cannot be beaten and is not judged.

    Args:
        health: the loss verdict after the last epoch.
        knn_init: the monitor at epoch 0 (None: the monitor was off, or a resumed run predates it).
        knn_final: the monitor after the last epoch.
        causes: what in the recipe could explain it (:func:`recipe_causes`), used when the loss did fall.

    Returns:
        ``health`` plus ``knn_top1_init`` and ``knn_top1_final`` when both are known, with its status
        and message replaced when the run is below its random init.
    """
    if knn_init is None or knn_final is None or health["status"] == "too-early":
        return health
    out = {**health, "knn_top1_init": knn_init, "knn_top1_final": knn_final}
    if knn_final > knn_init or knn_init >= 1.0:
        return {**out, "message": f"{health['message']}; kNN top-1 {knn_final:.3f}, {knn_init:.3f} at epoch 0"}
    seen = (
        f"below random init: the kNN monitor's final top-1 {knn_final:.3f} is not above {knn_init:.3f}, "
        f"this run's own encoder before the first step (epoch 0)"
    )
    if health["status"] == "not-learning":  # the loss never moved: its causes are the learning rate's
        why = f"; the encoder did not train either: {health['message']}"
    else:
        fixes = "; ".join(causes) or (
            "none of colour strength, crop scale, temperature, weight decay, projection head or lr is unusual "
            "here: the schedule may be too short to overtake random features, which are strong on simple "
            "images; train longer and compare the linear evaluation"
        )
        why = f"; the loss fell ({_against_chance(health['loss'], health['chance_loss'])}), so the encoder learnt "
        why += f"a task the classes do not share; likely causes in this recipe: {fixes}"
    return {**out, "status": "below-random-init", "message": seen + why}


def against_collapse(health: dict[str, Any], rankmes: Sequence[float], feature_dim: int) -> dict[str, Any]:
    """``health`` judged on the monitor's RankMe curve (epoch 0 first): ``collapsing`` or unchanged.

    The rule: the final RankMe is under ``max(2, COLLAPSE_FRACTION * feature_dim)``, or the last
    :data:`FALLING_POINTS` values each fell and the final one is under half the curve's peak.
    ``feature_dim`` is the most RankMe can be: ``min(images measured, feature dimension)``; under
    4 there is too little to judge. A verdict already worse than ``slow-start`` stands.
    """
    if not rankmes or health["status"] == "too-early" or feature_dim < 4:
        return health
    final, peak = float(rankmes[-1]), float(max(rankmes))
    out = {**health, "rankme_final": final}
    floor = max(2.0, COLLAPSE_FRACTION * feature_dim)
    tail = list(rankmes[-FALLING_POINTS:])
    falling = len(tail) == FALLING_POINTS and all(b < a for a, b in zip(tail, tail[1:])) and final < peak / 2
    if health["status"] not in ("healthy", "slow-start") or not (final < floor or falling):
        return out
    seen = (
        f"under {floor:.1f} ({100 * COLLAPSE_FRACTION:g}% of the {feature_dim} it can reach)"
        if final < floor
        else f"after falling at each of the last {FALLING_POINTS} measurements from a peak of {peak:.1f}"
    )
    return {
        **out,
        "status": "collapsing",
        "message": f"collapsing: the features' effective rank (RankMe) is {final:.1f}, {seen}: the encoder maps "
        "images into a few directions; likely causes: a temperature too low or too high (0.1-0.5 trains best), "
        "augmentations too weak to need more than a few features (colour strength, crop scale), or a learning "
        "rate large enough to wreck the features",
    }


def pretrain_health(history: list[dict[str, Any]], cfg: Config, steps_per_epoch: int) -> dict[str, Any]:
    """The verdict on a pretraining history under its own recipe (schedule, peak lr, warm-up, augmentation).

    The loss is judged by :func:`training_health`; once the last epoch is done, the kNN monitor's
    final value is judged against epoch 0 (:func:`against_init`) and its RankMe curve for
    collapse (:func:`against_collapse`).
    """
    pc = cfg.pretrain
    health = training_health(
        [r["loss"] for r in history],
        epochs=pc.epochs,
        batch_size=pc.batch_size,
        peak_lr=scaled_lr(pc),
        lr_scaling=pc.lr_scaling,
        warmup_epochs=warmup_length(pc, steps_per_epoch) / max(1, steps_per_epoch),
        optimizer=pc.optimizer,
    )
    if len(history) < pc.epochs:
        return health
    health = against_init(
        health,
        knn_init=history[0].get("knn_top1_init"),
        knn_final=history[-1].get("knn_top1"),
        causes=recipe_causes(cfg),
    )
    curve = [history[0]["rankme_init"]] if "rankme_init" in history[0] else []
    curve += [r["rankme"] for r in history if "rankme" in r]
    bound = history[-1].get("rankme_max", feature_dim(cfg.model))  # min(images measured, feature dimension)
    return against_collapse(health, curve, int(bound))
