"""Linear evaluation on precomputed features (the default 'features' protocol).

The linear evaluation protocol of SimCLR (Chen et al. 2020, arXiv:2002.05709,
Sec. 4 and App. B.6): a linear classifier on the frozen encoder's
representation, measured by top-1 accuracy. Here it is solved as a convex
problem: multinomial logistic regression on standardised features, full-batch
L-BFGS with a strong-Wolfe line search (as in the L-BFGS-based linear probes of
Kolesnikov et al. 2019 and Radford et al. 2021), one fit per L2 strength, the
strength chosen on the validation split. A strength that wins only on an edge of
the configured grid is no optimum found: the sweep extends past that edge until
the best is inside it or a bound is reached (:func:`extend_direction`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kubeclr.config import EvalConfig

log = logging.getLogger(__name__)

GRAD_TOL = 1e-5  # L-BFGS stops when max |gradient| of the (mean) objective is below this
# The extended sweep stays inside these strengths. Below 1e-9 the penalty's gradient l2 * W is under
# GRAD_TOL for any |W| < 1e4, so L-BFGS stops before it shapes the fit; above 10 the weights sit in the
# strong-L2 limit W ~ (gradient at zero) / l2, whose direction (the class means of the standardised
# features) and so whose predictions no stronger L2 changes.
L2_BOUNDS = (1e-9, 1e1)
MAX_EXTENSIONS = 4  # extra strengths per direction, each 10x past the previous edge
EDGE = {"up": "top", "down": "bottom"}


@dataclass
class LinearResult:
    """Outcome of a linear evaluation.

    Attributes:
        results: the linear-eval results dict of the step contract (without ``knn``).
        classifier: ``{"weight": (C, D), "bias": (C,), "mean": (D,), "std": (D,)}`` CPU
            tensors; logits = ``((x - mean) / std) @ weight.T + bias``.
    """

    results: dict
    classifier: dict[str, Tensor]


def standardization(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and std of (N, D) features; std floored at 1e-6 (constant dims)."""
    return x.mean(dim=0), x.std(dim=0, unbiased=False).clamp_min(1e-6)


def fit_logistic(
    x: Tensor, y: Tensor, *, num_classes: int, l2: float, max_iter: int, init: nn.Linear | None = None
) -> nn.Linear:
    """Multinomial logistic regression by full-batch L-BFGS on ``x``'s device.

    Minimises ``mean CE(Wx + b, y) + l2 / 2 * ||W||^2`` from a zero (or given warm) start, so the
    fit is deterministic (the problem is convex; the bias is not penalised). Stops once the
    largest gradient entry is below ``GRAD_TOL`` (converged; a warm-started fit on the
    regularisation path often needs only a few iterations) or after ``max_iter`` iterations.

    Args:
        x: (N, D) float32 standardised features.
        y: (N,) int64 labels in ``range(num_classes)``.
        num_classes: C.
        l2: ridge strength on the weights.
        max_iter: L-BFGS iterations.
        init: warm start (a solution for a nearby ``l2``); None starts from zero.

    Returns:
        The fitted ``nn.Linear(D, C)`` on ``x``'s device.
    """
    head = nn.Linear(x.shape[1], num_classes).to(x.device)
    with torch.no_grad():
        head.weight.copy_(init.weight if init is not None else torch.zeros_like(head.weight))
        head.bias.copy_(init.bias if init is not None else torch.zeros_like(head.bias))
    opt = torch.optim.LBFGS(
        head.parameters(),
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=GRAD_TOL,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(head(x), y) + 0.5 * l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head


def topk_accuracy(logits: Tensor, y: Tensor, k: int) -> float:
    """Fraction of rows whose true label is among the ``k`` largest logits (k clamped to C)."""
    if y.numel() == 0:
        return 0.0
    k = min(k, logits.shape[1])
    hits = (logits.topk(k, dim=1).indices == y.view(-1, 1)).any(dim=1)
    return float(hits.float().mean())


def confusion_matrix(pred: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """(C, C) int64 counts; rows are true classes, columns predicted classes."""
    flat = y.long().cpu() * num_classes + pred.long().cpu()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def classification_results(
    val_logits: Tensor, val_y: Tensor, test_logits: Tensor, test_y: Tensor, class_names: Sequence[str]
) -> dict:
    """Accuracies, per-class test accuracy and test confusion matrix, as plain JSON types."""
    conf = confusion_matrix(test_logits.argmax(dim=1), test_y, len(class_names))
    support = conf.sum(dim=1)
    per_class = {
        name: (float(conf[i, i] / support[i]) if support[i] > 0 else 0.0) for i, name in enumerate(class_names)
    }
    return {
        "val_top1": topk_accuracy(val_logits, val_y, 1),
        "val_top5": topk_accuracy(val_logits, val_y, 5),
        "test_top1": topk_accuracy(test_logits, test_y, 1),
        "test_top5": topk_accuracy(test_logits, test_y, 5),
        "per_class": per_class,
        "confusion": conf.tolist(),
        "class_names": list(class_names),
    }


def extend_direction(sweep: Mapping[float, float]) -> str | None:
    """Which way the L2 sweep must grow for its optimum to lie inside it.

    The best val top-1 reached only at the strongest (weakest) strength tried means the curve still
    rises towards that edge: ``"up"`` (``"down"``). Reached anywhere else, the optimum is inside: None.
    A plateau that reaches in from an edge counts as inside: the best accuracy is already there,
    though the tie rule (ties to the smaller strength) may still pick the bottom edge. One strength
    alone is a fixed choice, not a sweep: None.

    Args:
        sweep: val top-1 by L2 strength.
    """
    if len(sweep) < 2:
        return None
    best = max(sweep.values())
    winners = [l2 for l2, acc in sweep.items() if acc == best]
    if winners == [max(sweep)]:
        return "up"
    if winners == [min(sweep)]:
        return "down"
    return None


def _next_l2(edge: float, direction: str) -> float | None:
    """The strength 10x past ``edge``, or None outside :data:`L2_BOUNDS` (as from 0)."""
    l2 = float(f"{edge * 10 if direction == 'up' else edge / 10:.12g}")  # 1e-6 / 10 is 1e-7, not 9.99e-8
    return l2 if L2_BOUNDS[0] <= l2 <= L2_BOUNDS[1] else None


def linear_eval_features(
    features: dict[str, Tensor], class_names: Sequence[str], cfg: EvalConfig, *, device: torch.device
) -> LinearResult:
    """The 'features' protocol: logistic regression on standardised features.

    Fits every strength of ``cfg.l2_grid``, strongest first; then, while :func:`extend_direction`
    says the best sits on an edge, one more strength 10x past that edge, at most
    :data:`MAX_EXTENSIONS` per direction and never outside :data:`L2_BOUNDS`.

    Args:
        features: ``train_x, val_x, test_x`` (N, D) float and ``train_y, val_y, test_y`` (N,) int.
        class_names: label names, index = label.
        cfg: eval config (``l2_grid``, ``max_iter``).
        device: where the solver runs.

    Returns:
        A :class:`LinearResult`; ``results["l2"]`` is the chosen strength (best val top-1,
        ties to the smaller strength), ``results["l2_sweep"]`` every strength tried, weakest first
        (``{"l2", "val_top1", "extended"}``, ``extended`` for those past the configured grid), and
        ``results["l2_at_bound"]`` whether the best still sat on an edge when the extension had to
        stop (the optimum may lie beyond).
    """
    start = time.perf_counter()
    c = len(class_names)
    train_x = features["train_x"].to(device, torch.float32)
    mean, std = standardization(train_x)
    xs = {s: ((features[f"{s}_x"].to(device, torch.float32) - mean) / std) for s in ("train", "val", "test")}
    ys = {s: features[f"{s}_y"].to(device, torch.long) for s in ("train", "val", "test")}
    accs: dict[float, float] = {}  # val top-1 by strength
    heads: dict[float, nn.Linear] = {}  # (C, D) each: small beside the features

    def fit(l2: float, init: nn.Linear | None) -> nn.Linear:
        head = fit_logistic(xs["train"], ys["train"], num_classes=c, l2=l2, max_iter=cfg.max_iter, init=init)
        with torch.no_grad():
            accs[l2] = topk_accuracy(head(xs["val"]), ys["val"], 1)
        heads[l2] = head
        log.info("linear eval: l2=%g val top-1 %.4f", l2, accs[l2])
        return head

    # Regularisation path: strongest L2 first, each fit warm-started from the previous one
    # (the problem is convex, so the optimum does not depend on the start; only the work does).
    head = None
    for l2 in sorted(set(cfg.l2_grid), reverse=True):  # l2_grid is non-empty (config rule)
        head = fit(l2, head)
    grid = set(accs)
    at_bound = False
    steps = {"up": 0, "down": 0}
    while (direction := extend_direction(accs)) is not None:
        edge = max(accs) if direction == "up" else min(accs)
        l2 = _next_l2(edge, direction) if steps[direction] < MAX_EXTENSIONS else None
        if l2 is None:
            at_bound = True
            log.warning(
                "linear eval: best l2=%g is still the %s of the sweep after %d extension(s), at the bound "
                "(10x steps, at most %d, within %g..%g): the optimum may lie beyond",
                edge,
                EDGE[direction],
                steps[direction],
                MAX_EXTENSIONS,
                *L2_BOUNDS,
            )
            break
        log.info("linear eval: best l2=%g is the %s of the sweep; extending it to l2=%g", edge, EDGE[direction], l2)
        steps[direction] += 1
        fit(l2, heads[edge])  # warm start from the neighbouring edge, as on the path
    l2 = min(accs, key=lambda s: (-accs[s], s))  # best val top-1, ties to the smaller strength
    head = heads[l2]
    with torch.no_grad():
        results = classification_results(head(xs["val"]), ys["val"], head(xs["test"]), ys["test"], class_names)
    sweep = [{"l2": s, "val_top1": accs[s], "extended": s not in grid} for s in sorted(accs)]
    results = {
        "protocol": "features",
        **results,
        "l2": l2,
        "l2_sweep": sweep,
        "l2_at_bound": at_bound,
        "seconds": time.perf_counter() - start,
    }
    classifier = {
        "weight": head.weight.detach().cpu(),
        "bias": head.bias.detach().cpu(),
        "mean": mean.cpu(),
        "std": std.cpu(),
    }
    return LinearResult(results=results, classifier=classifier)
