"""LARS against hand-computed updates, parameter groups, and the warm-up + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kubeclr.config import PretrainConfig
from kubeclr.core.optim import LARS, build_optimizer, build_scheduler, param_groups, scaled_lr, warmup_cosine


def _param(values, grad):
    p = nn.Parameter(torch.tensor(values, dtype=torch.float64))
    p.grad = torch.tensor(grad, dtype=torch.float64)
    return p


def test_lars_two_steps_match_hand_computation():
    lr, m, wd, eta = 0.5, 0.9, 0.1, 0.01
    w0, g0, g1 = [[3.0, 0.0], [0.0, 4.0]], [[1.0, 2.0], [2.0, -1.0]], [[0.5, 0.5], [-1.0, 0.0]]
    p = _param(w0, g0)
    opt = LARS([p], lr=lr, momentum=m, weight_decay=wd, trust_coefficient=eta)
    opt.step()
    # by hand: d = g + wd*w = [[1.3, 2], [2, -0.6]]; ||w|| = 5; ||d|| = sqrt(1.69 + 4 + 4 + 0.36)
    d0 = torch.tensor([[1.3, 2.0], [2.0, -0.6]], dtype=torch.float64)
    trust0 = eta * 5.0 / math.sqrt(10.05)
    v0 = lr * trust0 * d0
    w1 = torch.tensor(w0, dtype=torch.float64) - v0
    torch.testing.assert_close(p.data, w1)

    p.grad = torch.tensor(g1, dtype=torch.float64)
    opt.step()
    d1 = torch.tensor(g1, dtype=torch.float64) + wd * w1
    trust1 = eta * w1.norm() / d1.norm()
    v1 = m * v0 + lr * trust1 * d1
    torch.testing.assert_close(p.data, w1 - v1)


def test_lars_excluded_group_is_plain_momentum_sgd_without_decay():
    lr, m = 0.1, 0.9
    p = _param([1.0, -2.0, 3.0], [0.5, 0.5, -1.0])
    q = _param([1.0, -2.0, 3.0], [0.5, 0.5, -1.0])
    lars = LARS(
        [dict(params=[p], weight_decay=0.0, lars_exclude=True)],
        lr=lr,
        momentum=m,
        weight_decay=0.5,
        trust_coefficient=0.001,
    )
    sgd = torch.optim.SGD([q], lr=lr, momentum=m)
    for grad in ([0.5, 0.5, -1.0], [1.0, 0.0, 2.0], [-0.3, 0.2, 0.1]):
        p.grad = torch.tensor(grad, dtype=torch.float64)
        q.grad = p.grad.clone()
        lars.step()
        sgd.step()
    torch.testing.assert_close(p.data, q.data)
    # by hand for the first step: no decay, no trust ratio
    r = _param([1.0, -2.0, 3.0], [0.5, 0.5, -1.0])
    LARS([dict(params=[r], weight_decay=0.0, lars_exclude=True)], lr=lr).step()
    torch.testing.assert_close(r.data, torch.tensor([0.95, -2.05, 3.1], dtype=torch.float64))


def test_lars_zero_norms_are_safe():
    zero_w = _param([0.0, 0.0], [1.0, -2.0])  # ||w|| = 0 -> trust 1
    zero_g = _param([1.0, 2.0], [0.0, 0.0])  # ||d|| = 0 (no decay) -> trust 1, no change
    opt = LARS([zero_w, zero_g], lr=0.1, weight_decay=0.0)
    opt.step()
    torch.testing.assert_close(zero_w.data, torch.tensor([-0.1, 0.2], dtype=torch.float64))
    torch.testing.assert_close(zero_g.data, torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert torch.isfinite(zero_w.data).all() and torch.isfinite(zero_g.data).all()


def test_lars_state_dict_round_trip():
    model = nn.Linear(3, 2)
    opt = LARS(param_groups(model, 1e-4), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    clone = LARS(param_groups(model, 1e-4), lr=0.1)
    clone.load_state_dict(opt.state_dict())
    assert torch.equal(clone.state[model.weight]["momentum_buffer"], opt.state[model.weight]["momentum_buffer"])


def test_param_groups_exclude_bias_and_batchnorm():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    regular, excluded = param_groups(model, 1e-6)
    assert {id(p) for p in regular["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert {id(p) for p in excluded["params"]} == {
        id(model[0].bias),
        id(model[1].weight),
        id(model[1].bias),
        id(model[3].bias),
    }
    assert regular["weight_decay"] == 1e-6 and not regular["lars_exclude"]
    assert excluded["weight_decay"] == 0.0 and excluded["lars_exclude"]


def test_scaled_lr():
    assert scaled_lr(PretrainConfig(lr=0.3, batch_size=1024)) == pytest.approx(1.2)
    assert scaled_lr(PretrainConfig(lr=0.3, batch_size=1024, lr_scaling="none")) == 0.3


@pytest.mark.parametrize("batch, expected", [(128, 0.075 * math.sqrt(128)), (256, 1.2), (1024, 2.4), (4096, 4.8)])
def test_sqrt_scaling_is_the_papers_small_batch_rule(batch, expected):
    # SimCLR App. B.1: LARS lr = 0.075 x sqrt(B); with base lr 1.2 the sqrt rule gives exactly that
    cfg = PretrainConfig(lr=1.2, batch_size=batch, lr_scaling="sqrt")
    assert scaled_lr(cfg) == pytest.approx(expected)
    assert scaled_lr(cfg) == pytest.approx(0.075 * math.sqrt(batch))


def test_the_three_scalings_agree_at_batch_256_and_differ_elsewhere():
    rates = {s: scaled_lr(PretrainConfig(lr=0.3, batch_size=256, lr_scaling=s)) for s in ("linear", "sqrt", "none")}
    assert rates == pytest.approx({"linear": 0.3, "sqrt": 0.3, "none": 0.3})
    at_128 = {s: scaled_lr(PretrainConfig(lr=0.3, batch_size=128, lr_scaling=s)) for s in ("linear", "sqrt", "none")}
    assert at_128 == pytest.approx({"linear": 0.15, "sqrt": 0.3 / math.sqrt(2), "none": 0.3})


def _lrs(cfg: PretrainConfig, steps_per_epoch: int) -> list[float]:
    """The learning rate of every optimizer step of a whole run (SGD, so the lr is used as is)."""
    opt = build_optimizer(nn.Linear(2, 2), cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch)
    seen = []
    for _ in range(cfg.epochs * steps_per_epoch):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return seen


def test_warmup_steps_schedule_by_hand():
    # 3 epochs x 4 steps = 12 steps, warm-up 3 steps, peak 0.8 x sqrt(64/256) = 0.4:
    # warm-up 0.4 * (s+1)/3 for s = 0..2, then 0.4 * (1 + cos(pi * (s-3)/9)) / 2 for s = 3..11
    cfg = PretrainConfig(
        optimizer="sgd", lr=0.8, lr_scaling="sqrt", batch_size=64, epochs=3, warmup_steps=3, warmup_epochs=2.0
    )  # warmup_steps wins over warmup_epochs
    by_hand = [0.4 / 3, 0.8 / 3, 0.4] + [0.2 * (1 + math.cos(math.pi * k / 9)) for k in range(9)]
    assert _lrs(cfg, steps_per_epoch=4) == pytest.approx(by_hand)


def test_fractional_warmup_epochs_schedule_by_hand():
    # 2 epochs x 5 steps; warm-up 0.4 epoch = 2 steps; peak 0.1 (no scaling)
    cfg = PretrainConfig(optimizer="sgd", lr=0.1, lr_scaling="none", epochs=2, warmup_epochs=0.4)
    by_hand = [0.05, 0.1] + [0.05 * (1 + math.cos(math.pi * k / 8)) for k in range(8)]
    assert _lrs(cfg, steps_per_epoch=5) == pytest.approx(by_hand)


def test_warmup_longer_than_the_run_is_capped():
    cfg = PretrainConfig(optimizer="sgd", lr=0.1, lr_scaling="none", epochs=1, warmup_steps=100)
    assert _lrs(cfg, steps_per_epoch=4) == pytest.approx([0.025, 0.05, 0.075, 0.1])


@pytest.mark.parametrize("name, cls", [("lars", LARS), ("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)])
def test_build_optimizer(name, cls):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    opt = build_optimizer(model, PretrainConfig(optimizer=name, lr=0.5, batch_size=512, weight_decay=1e-3))
    assert isinstance(opt, cls)
    assert [g["lr"] for g in opt.param_groups] == [1.0, 1.0]
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-3, 0.0]
    if name == "sgd":
        assert opt.param_groups[0]["nesterov"] is False and opt.param_groups[0]["momentum"] == 0.9


def test_warmup_cosine_key_points():
    base, total, warmup = 2.0, 110, 10
    assert warmup_cosine(0, total, warmup, base) == pytest.approx(base / warmup)  # ~0 at start
    assert warmup_cosine(warmup - 1, total, warmup, base) == pytest.approx(base)  # warm-up reaches base
    assert warmup_cosine(warmup, total, warmup, base) == pytest.approx(base)  # cosine starts at base
    assert warmup_cosine(60, total, warmup, base) == pytest.approx(base / 2)  # cosine midpoint
    assert warmup_cosine(total, total, warmup, base) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(0, 10, 0, base) == pytest.approx(base)  # no warm-up
    values = [warmup_cosine(s, total, warmup, base) for s in range(total + 1)]
    assert all(a <= b for a, b in zip(values[:warmup], values[1 : warmup + 1]))
    assert all(a >= b for a, b in zip(values[warmup:], values[warmup + 1 :]))


def test_scheduler_steps_per_iteration():
    model = nn.Linear(2, 2)
    cfg = PretrainConfig(epochs=4, warmup_epochs=1, lr=0.3, batch_size=256, optimizer="sgd")
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch=5)
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [warmup_cosine(s, 20, 5, 0.3) for s in range(20)]
    assert seen == pytest.approx(expected)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def _lars_reference(model: nn.Module, buffers: dict, *, lr: float, momentum: float, wd: float, eta: float) -> None:
    """One LARS step written per parameter from the docstring's formulas (You et al. 2017; SimCLR's exclusions)."""
    for p in model.parameters():
        excluded = p.ndim <= 1  # biases and BatchNorm: plain momentum SGD, no decay, no trust ratio
        d = p.grad if excluded else p.grad + wd * p
        w_norm, d_norm = p.norm(), d.norm()
        trust = 1.0 if excluded or w_norm == 0 or d_norm == 0 else eta * w_norm / d_norm
        v = buffers.get(p, torch.zeros_like(p))
        buffers[p] = momentum * v + lr * trust * d
        p.sub_(buffers[p])


def _small_model(seed: int) -> nn.Module:
    """Conv + BN + linear; biases and BN are excluded from adaptation. The conv weights are channels_last, as on
    CUDA, so the flat buffer's views must follow their strides."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, bias=False),
        nn.BatchNorm2d(8),
        nn.Conv2d(8, 4, 3),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 5),
        nn.BatchNorm1d(5),
    )
    return model.to(memory_format=torch.channels_last)


def _random_grads(model: nn.Module, seed: int) -> None:
    """Gradients with each parameter's strides (what backward gives); the last weight's is zero (||d|| = 0 with
    no decay). No forward pass: the optimiser alone is under test, and CPU channels_last convolutions can crash."""
    torch.manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    model[4].weight.grad.zero_()


@pytest.mark.parametrize("wd", [1e-4, 0.0])
def test_lars_fused_step_equals_a_per_parameter_reference(wd):
    """Five steps with a changing lr on a small model, against the formulas applied one tensor at a time."""
    fused, reference = _small_model(0), _small_model(0)
    momentum, eta = 0.9, 0.01
    opt = LARS(param_groups(fused, wd), lr=0.1, momentum=momentum, weight_decay=wd, trust_coefficient=eta)
    buffers: dict = {}
    for step in range(5):
        lr = 0.5 * (step + 1)  # as the warm-up changes it every step
        _random_grads(fused, seed=step)
        for a, b in zip(fused.parameters(), reference.parameters()):
            b.grad = a.grad.clone()
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        with torch.no_grad():
            _lars_reference(reference, buffers, lr=lr, momentum=momentum, wd=wd, eta=eta)
        for (name, a), b in zip(fused.named_parameters(), reference.parameters()):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6, msg=f"step {step}: {name}")
            v = opt.state[a]["momentum_buffer"]  # the step itself, to 1e-6 of its size
            torch.testing.assert_close(v, buffers[b], atol=1e-6 * buffers[b].abs().max().item(), rtol=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(fused.parameters(), _small_model(0).parameters()))


def test_lars_step_keeps_every_foreach_op_on_the_fused_path():
    """CUDA fuses a foreach op over tensor lists only if paired tensors share shape and strides (ATen's
    ForeachUtils.h, check_fast_path_restrictions); a list of 0-d trust ratios would cost one kernel per parameter."""
    from torch.utils._python_dispatch import TorchDispatchMode

    def same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
        return a.shape == b.shape and all(n == 1 or s == t for n, s, t in zip(a.shape, a.stride(), b.stride()))

    class Pairs(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.foreach, self.mismatched = [], []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            lists = [a for a in args if isinstance(a, (list, tuple)) and a and isinstance(a[0], torch.Tensor)]
            if func.__name__.startswith("_foreach_"):
                self.foreach.append(func.__name__)
                if len(lists) > 1 and not all(same_layout(*pair) for pair in zip(*lists)):
                    self.mismatched.append(func.__name__)
            return func(*args, **(kwargs or {}))

    model = _small_model(0)
    opt = LARS(param_groups(model, 1e-4), lr=0.1, weight_decay=1e-4)
    for step in range(2):  # the second step finds its momentum buffers
        _random_grads(model, seed=step)
        with Pairs() as seen:
            opt.step()
    assert seen.mismatched == [] and "_foreach_copy_.default" in seen.foreach
