"""Training health: is the contrastive loss moving away from chance?

NT-Xent over a global batch of B images contrasts each of the 2B views with
the 2B − 1 others, so an encoder whose embeddings carry no information scores
every candidate alike and the loss sits at ``log(2B − 1)`` (Chen et al. 2020,
arXiv:2002.05709, eq. 1). A loss still within :data:`MARGIN` of that after a
quarter of the schedule means the run is not learning: the usual cause is a
learning rate far too low for the batch and the schedule (linear scaling at a
small batch; SimCLR App. B.1 recommends square-root scaling there).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from kubeclr.config import PretrainConfig
from kubeclr.core.optim import scaled_lr, warmup_length

MARGIN = 0.01  # "within 1% of chance"
CHECK_FRACTION = 0.25  # judged once a quarter of the epochs are done


def chance_loss(batch_size: int) -> float:
    """NT-Xent of uninformative embeddings: ``log(2B - 1)`` for a global batch of ``B`` images."""
    return math.log(2 * batch_size - 1)


def check_epoch(epochs: int, warmup_epochs: float = 0.0) -> int:
    """The first epoch (1-based) at which health is judged.

    A quarter of the schedule, but never inside the warm-up, where the loss of
    a healthy run can still sit at (or above) chance; at most the last epoch.
    """
    return min(epochs, max(1, math.ceil(CHECK_FRACTION * epochs), math.floor(warmup_epochs) + 1))


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
        ``"too-early"`` before :func:`check_epoch`, then ``"ok"`` or
        ``"not-learning"`` (the latest loss is within 1% of chance); ``message``
        says what was seen and, when not learning (or when the loss left chance
        only after the check epoch), the likely causes.
    """
    chance = chance_loss(batch_size)
    done = len(losses)
    latest = float(losses[-1]) if losses else float("nan")
    out = {"chance_loss": chance, "loss": latest, "epoch": done}
    first = check_epoch(epochs, warmup_epochs)
    if done < first:
        return {**out, "status": "too-early", "message": f"judged after epoch {first}"}
    if latest < (1 - MARGIN) * chance:
        message = f"loss {latest:.3f} is {100 * (1 - latest / chance):.1f}% below chance {chance:.3f}"
        stalled = [e for e in range(first, done + 1) if losses[e - 1] >= (1 - MARGIN) * chance]
        if stalled:  # the log warned then; say so here too, so the report and the log agree
            message += (
                f"; it was within {100 * MARGIN:.0f}% of chance until epoch {stalled[-1]} of {epochs} "
                f"(a slow start: {_causes(optimizer, peak_lr, lr_scaling)})"
            )
        return {**out, "status": "ok", "message": message}
    return {
        **out,
        "status": "not-learning",
        "message": f"not learning: loss {latest:.3f} is within {100 * MARGIN:.0f}% of chance log(2B-1) = "
        f"{chance:.3f} after {done} of {epochs} epochs; likely causes: {_causes(optimizer, peak_lr, lr_scaling)}",
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


def pretrain_health(history: list[dict[str, Any]], pc: PretrainConfig, steps_per_epoch: int) -> dict[str, Any]:
    """:func:`training_health` of a pretraining history under its own schedule (peak lr, warm-up)."""
    return training_health(
        [r["loss"] for r in history],
        epochs=pc.epochs,
        batch_size=pc.batch_size,
        peak_lr=scaled_lr(pc),
        lr_scaling=pc.lr_scaling,
        warmup_epochs=warmup_length(pc, steps_per_epoch) / max(1, steps_per_epoch),
        optimizer=pc.optimizer,
    )
