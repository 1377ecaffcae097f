"""Linear evaluation on precomputed features (the default 'features' protocol).

The linear evaluation protocol of SimCLR (Chen et al. 2020, arXiv:2002.05709,
Sec. 4 and App. B.6): a linear classifier on the frozen encoder's
representation, measured by top-1 accuracy. Here it is solved as a convex
problem: multinomial logistic regression on standardised features, full-batch
L-BFGS with a strong-Wolfe line search (as in the L-BFGS-based linear probes of
Kolesnikov et al. 2019 and Radford et al. 2021), one fit per L2 strength, the
strength chosen on the validation split.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kubeclr.config import EvalConfig

log = logging.getLogger(__name__)

GRAD_TOL = 1e-5  # L-BFGS stops when max |gradient| of the (mean) objective is below this


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


def linear_eval_features(
    features: dict[str, Tensor], class_names: Sequence[str], cfg: EvalConfig, *, device: torch.device
) -> LinearResult:
    """The 'features' protocol: logistic regression on standardised features.

    Args:
        features: ``train_x, val_x, test_x`` (N, D) float and ``train_y, val_y, test_y`` (N,) int.
        class_names: label names, index = label.
        cfg: eval config (``l2_grid``, ``max_iter``).
        device: where the solver runs.

    Returns:
        A :class:`LinearResult`; ``results["l2"]`` is the chosen strength (best val top-1,
        ties to the smaller strength).
    """
    start = time.perf_counter()
    c = len(class_names)
    train_x = features["train_x"].to(device, torch.float32)
    mean, std = standardization(train_x)
    xs = {s: ((features[f"{s}_x"].to(device, torch.float32) - mean) / std) for s in ("train", "val", "test")}
    ys = {s: features[f"{s}_y"].to(device, torch.long) for s in ("train", "val", "test")}
    best: tuple[float, float, nn.Linear] | None = None
    head = None
    sweep = []
    # Regularisation path: strongest L2 first, each fit warm-started from the previous one
    # (the problem is convex, so the optimum does not depend on the start; only the work does).
    for l2 in sorted(cfg.l2_grid, reverse=True):
        head = fit_logistic(xs["train"], ys["train"], num_classes=c, l2=l2, max_iter=cfg.max_iter, init=head)
        with torch.no_grad():
            acc = topk_accuracy(head(xs["val"]), ys["val"], 1)
        log.info("linear eval: l2=%g val top-1 %.4f", l2, acc)
        sweep.append({"l2": l2, "val_top1": acc})
        if best is None or acc >= best[0]:  # >=: ties go to the smaller strength, seen later
            best = (acc, l2, head)
    assert best is not None  # l2_grid is non-empty (config rule)
    _, l2, head = best
    with torch.no_grad():
        results = classification_results(head(xs["val"]), ys["val"], head(xs["test"]), ys["test"], class_names)
    results = {"protocol": "features", **results, "l2": l2, "l2_sweep": sweep, "seconds": time.perf_counter() - start}
    classifier = {
        "weight": head.weight.detach().cpu(),
        "bias": head.bias.detach().cpu(),
        "mean": mean.cpu(),
        "std": std.cpu(),
    }
    return LinearResult(results=results, classifier=classifier)
