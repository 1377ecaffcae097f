"""Optimisers and the learning-rate schedule of SimCLR pretraining.

LARS: You, Gitman and Ginsburg, "Large Batch Training of Convolutional
Networks" (arXiv:1708.03888), in the form used by SimCLR (Chen et al. 2020,
arXiv:2002.05709, §B.1 and google-research/simclr ``lars_optimizer.py``):
momentum 0.9, trust coefficient η = 0.001, weight decay added to the gradient
before the trust ratio, and biases / BatchNorm parameters excluded from both
weight decay and the trust ratio. Schedule: linear warm-up, then cosine decay
without restarts (Loshchilov & Hutter 2017), stepped once per iteration.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from kubeclr.config import PretrainConfig


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling with momentum.

    For each parameter ``w`` with gradient ``g`` (per step)::

        d     = g + wd * w
        trust = eta * ||w|| / ||d||   if ||w|| > 0 and ||d|| > 0 else 1
        v     = momentum * v + lr * trust * d
        w     = w - v

    Groups with ``lars_exclude=True`` skip both the weight decay and the trust
    ratio, i.e. they get plain momentum SGD. As in SimCLR's implementation the
    learning rate enters the momentum buffer (identical to PyTorch SGD for a
    constant lr, and smoother when the lr changes every step).

    A step is a handful of fused (``torch._foreach_*``) kernels whatever the number
    of parameters, and never reads a value back to the host: every ``d`` is a view of
    one flat buffer, so the per-parameter trust ratios scale them all in one multiply.
    The parameters of a group must share one device and dtype.

    Args:
        params: parameters or param-group dicts (see :func:`param_groups`).
        lr: learning rate.
        momentum: momentum coefficient.
        weight_decay: L2 coefficient added to the gradient.
        trust_coefficient: η of the trust ratio.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0 or trust_coefficient <= 0:
            raise ValueError(
                f"invalid LARS hyper-parameters: lr={lr}, momentum={momentum}, "
                f"weight_decay={weight_decay}, trust_coefficient={trust_coefficient}"
            )
        defaults = dict(
            lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=trust_coefficient, lars_exclude=False
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["lars_exclude"]:
                updates = grads  # plain momentum SGD
            else:
                flat, updates = _flat_like(params)  # updates[i]: a view of flat shaped (and strided) as params[i]
                torch._foreach_copy_(updates, grads)
                if group["weight_decay"]:
                    torch._foreach_add_(updates, params, alpha=group["weight_decay"])  # d = g + wd * w
                w_norm = torch.stack(torch._foreach_norm(params))  # (P,)
                d_norm = torch.stack(torch._foreach_norm(updates))  # (P,)
                ok = (w_norm > 0) & (d_norm > 0)
                # where() evaluates both branches; keep the denominator non-zero.
                trust = torch.where(
                    ok, group["trust_coefficient"] * w_norm / d_norm.clamp_min(1e-30), torch.ones_like(w_norm)
                )  # (P,)
                # d *= trust, parameter by parameter, as one multiply of the flat buffer by each trust ratio
                # repeated over its parameter's elements: a foreach multiply by a list of P 0-d tensors runs
                # one kernel per parameter on CUDA (its fused path needs tensors of equal shapes)
                flat.mul_(trust.repeat_interleave(self._numels(params), output_size=flat.numel()))  # (numel,)
            bufs = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                bufs.append(state["momentum_buffer"])
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, updates, alpha=group["lr"])
            torch._foreach_sub_(params, bufs)
        return loss

    def _numels(self, params: list[torch.Tensor]) -> torch.Tensor:
        """``(P,)`` element count of each parameter, on their device; made once per group (a host-to-device copy)."""
        cache = self.__dict__.setdefault("_numel_tensors", {})
        key = (params[0].device, tuple(p.numel() for p in params))
        if key not in cache:
            cache[key] = torch.tensor(key[1], device=key[0])
        return cache[key]


def _flat_like(params: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One uninitialised flat buffer and a view of it per parameter, with its shape and (dense) strides.

    Matching strides (a channels_last weight's view is channels_last) keep the foreach ops that pair
    these views with the parameters, their gradients and momentum buffers on the fused path.

    Raises:
        ValueError: the parameters do not share one device and dtype.
    """
    if len({(p.device, p.dtype) for p in params}) > 1:
        raise ValueError("LARS: the parameters of a group must share one device and dtype")
    flat = torch.empty(sum(p.numel() for p in params), dtype=params[0].dtype, device=params[0].device)
    views, start = [], 0
    for p in params:
        segment = flat[start : start + p.numel()]
        dense = p.is_contiguous() or (p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last))
        views.append(segment.as_strided(p.shape, p.stride()) if dense else segment.view(p.shape))
        start += p.numel()
    return flat, views


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split parameters into the decayed/adapted group and the excluded one.

    Biases and BatchNorm affine parameters (every parameter with ``ndim <= 1``)
    get ``weight_decay=0`` and ``lars_exclude=True``, as in SimCLR.

    Args:
        model: the module whose trainable parameters are optimised.
        weight_decay: decay of the regular group.

    Returns:
        Two param-group dicts (empty groups are dropped).
    """
    regular, excluded = [], []
    for p in model.parameters():
        if p.requires_grad:
            (excluded if p.ndim <= 1 else regular).append(p)
    groups = [
        dict(params=regular, weight_decay=weight_decay, lars_exclude=False),
        dict(params=excluded, weight_decay=0.0, lars_exclude=True),
    ]
    return [g for g in groups if g["params"]]


# Peak learning rate from the base rate and the global batch B; all three agree at B = 256.
LR_SCALING = {
    "linear": lambda lr, b: lr * b / 256,  # Goyal et al. 2017; SimCLR's 0.3 x B/256 for long schedules
    "sqrt": lambda lr, b: lr * math.sqrt(b / 256),  # SimCLR App. B.1: 0.075 x sqrt(B) (= 1.2 here) for small B
    "none": lambda lr, b: lr,
}


def scaled_lr(cfg: PretrainConfig) -> float:
    """Peak learning rate: ``cfg.lr`` scaled to the global batch by ``cfg.lr_scaling`` (:data:`LR_SCALING`)."""
    return LR_SCALING[cfg.lr_scaling](cfg.lr, cfg.batch_size)


def build_optimizer(model: nn.Module, cfg: PretrainConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``cfg.optimizer`` over :func:`param_groups`.

    Args:
        model: module to optimise (the encoder and the head).
        cfg: pretraining section (optimizer, lr, lr_scaling, batch_size,
            momentum, weight_decay, trust_coefficient).

    Returns:
        ``LARS``, ``torch.optim.SGD`` (momentum, no Nesterov) or ``torch.optim.AdamW``.
    """
    groups = param_groups(model, cfg.weight_decay)
    lr = scaled_lr(cfg)
    builders = {
        "lars": lambda: LARS(
            groups, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, trust_coefficient=cfg.trust_coefficient
        ),
        "sgd": lambda: torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=False),
        "adamw": lambda: torch.optim.AdamW(groups, lr=lr),
    }
    return builders[cfg.optimizer]()


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Learning rate at iteration ``step`` (0-based).

    Linear warm-up ``base_lr * (step + 1) / warmup_steps`` for the first
    ``warmup_steps`` iterations (reaching ``base_lr`` on the last of them), then
    half a cosine from ``base_lr`` at ``step == warmup_steps`` to 0 at
    ``step == total_steps``; 0 beyond.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_length(cfg: PretrainConfig, steps_per_epoch: int) -> int:
    """Warm-up length in iterations: ``cfg.warmup_steps`` when set, else ``warmup_epochs`` epochs, rounded.

    A short run on a small dataset has only a few steps per epoch, so a whole
    epoch of warm-up can be a large part of it; ``warmup_steps`` says it exactly.
    """
    if cfg.warmup_steps:
        return cfg.warmup_steps
    return round(cfg.warmup_epochs * max(1, steps_per_epoch))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: PretrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration warm-up + cosine schedule over ``cfg.epochs`` epochs.

    Call ``scheduler.step()`` after every ``optimizer.step()``, not per epoch.

    Args:
        optimizer: optimiser whose groups' ``lr`` is the peak learning rate.
        cfg: pretraining section (epochs, warmup_epochs or warmup_steps).
        steps_per_epoch: iterations per epoch (>= 1).
    """
    total = cfg.epochs * max(1, steps_per_epoch)
    warmup = min(total, warmup_length(cfg, steps_per_epoch))

    def factor(step: int) -> float:
        return warmup_cosine(step, total, warmup, 1.0)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
