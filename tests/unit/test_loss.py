"""NT-Xent against a NumPy oracle written from the paper, plus the distributed gather."""

from __future__ import annotations

import datetime
import math
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sync_fixtures import check_counter, host_reads

from kubeclr.core import loss as loss_mod
from kubeclr.core.loss import NTXentLoss, gather_with_grad


def ntxent_oracle(z1: np.ndarray, z2: np.ndarray, tau: float) -> float:
    """Chen et al. 2020, eq. 1 and Algorithm 1, as a direct loop over positive pairs."""
    z = np.concatenate([z1, z2]).astype(np.float64)  # views interleaved as (k, N + k)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z1)

    def ell(i: int, j: int) -> float:
        num = math.exp(z[i] @ z[j] / tau)
        den = sum(math.exp(z[i] @ z[k] / tau) for k in range(2 * n) if k != i)
        return -math.log(num / den)

    return sum(ell(k, k + n) + ell(k + n, k) for k in range(n)) / (2 * n)


@pytest.mark.parametrize("n", [1, 3, 8])
@pytest.mark.parametrize("d", [2, 16, 128])
@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_matches_paper_oracle(n, d, tau):
    g = torch.Generator().manual_seed(n * 1000 + d)
    z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    got = NTXentLoss(tau)(z1, z2).item()
    assert got == pytest.approx(ntxent_oracle(z1.numpy(), z2.numpy(), tau), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("n", [1, 2, 5, 32])
def test_identical_embeddings_closed_form(n):
    z = torch.ones(n, 4)
    assert NTXentLoss(0.5)(z, z.clone()).item() == pytest.approx(math.log(2 * n - 1), abs=1e-5)


def test_symmetric_in_the_two_views_and_scale_invariant():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g)
    crit = NTXentLoss(0.2)
    assert crit(z1, z2).item() == pytest.approx(crit(z2, z1).item(), rel=1e-6)
    assert crit(3 * z1, 0.5 * z2).item() == pytest.approx(crit(z1, z2).item(), rel=1e-5)


def test_aligned_pairs_give_lower_loss_than_random():
    g = torch.Generator().manual_seed(2)
    z1 = torch.randn(16, 32, generator=g)
    crit = NTXentLoss(0.5)
    assert crit(z1, z1 + 0.01 * torch.randn(16, 32, generator=g)) < crit(z1, torch.randn(16, 32, generator=g))


def test_gradients_finite_even_for_zero_vectors():
    z1 = torch.randn(4, 8, requires_grad=True)
    z2 = torch.zeros(4, 8, requires_grad=True)
    out = NTXentLoss(0.1)(z1, z2)
    out.backward()
    assert torch.isfinite(out)
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
    assert z1.grad.abs().sum() > 0


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="z1 and z2"):
        NTXentLoss()(torch.randn(4, 8), torch.randn(5, 8))


@pytest.mark.parametrize("tau", [0.1, 0.2])
def test_loss_is_float32_under_bf16_autocast(tau):
    g = torch.Generator().manual_seed(7)
    z1 = torch.randn(64, 128, generator=g, requires_grad=True)
    z2 = torch.randn(64, 128, generator=g)
    crit = NTXentLoss(tau)
    want = crit(z1, z2)
    (want_grad,) = torch.autograd.grad(want, z1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = crit(z1, z2)
        unguarded = crit._loss(z1, z2)  # negative control: the same maths left to autocast
    (got_grad,) = torch.autograd.grad(got, z1)
    assert got.dtype == torch.float32
    assert abs(got.item() - want.item()) <= 1e-6
    torch.testing.assert_close(got_grad, want_grad, rtol=0, atol=1e-6)
    assert abs(unguarded.item() - want.item()) > 1e-4  # bf16 logits: the error the guard removes


def test_bf16_projections_give_the_loss_of_their_float32_values():
    g = torch.Generator().manual_seed(8)
    z1, z2 = torch.randn(16, 32, generator=g).bfloat16(), torch.randn(16, 32, generator=g).bfloat16()
    crit = NTXentLoss(0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = crit(z1, z2)
    assert got.item() == pytest.approx(ntxent_oracle(z1.float().numpy(), z2.float().numpy(), 0.1), rel=1e-5)


def test_loss_and_backward_never_read_values_back_to_the_host():
    """On CUDA each read is a sync; F.one_hot's validity check made two per step."""
    check_counter()
    z1, z2 = torch.randn(8, 4, requires_grad=True), torch.randn(8, 4)
    crit = NTXentLoss(0.5)
    assert host_reads(lambda: [crit(z1, z2).backward() for _ in range(3)]) == 0
    assert host_reads(lambda: torch.nn.functional.one_hot(torch.arange(4), 8)) > 0  # what it replaced


def test_cached_targets_follow_the_batch_size():
    g = torch.Generator().manual_seed(9)
    crit = NTXentLoss(0.5)
    for n in (4, 6, 4):
        z1, z2 = torch.randn(n, 8, generator=g), torch.randn(n, 8, generator=g)
        assert crit(z1, z2).item() == pytest.approx(ntxent_oracle(z1.numpy(), z2.numpy(), 0.5), rel=1e-5)


def test_gather_is_identity_without_process_group():
    x = torch.randn(3, 2)
    assert gather_with_grad(x) is x


# -- distributed parity: 2 gloo processes vs one process on the concatenated batch ----------------

WORLD, N_LOCAL, D_IN, D_OUT, TAU = 2, 4, 6, 5, 0.5


def _data():
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(WORLD * N_LOCAL, D_IN, generator=g)
    x2 = torch.randn(WORLD * N_LOCAL, D_IN, generator=g)
    torch.manual_seed(0)
    return x1, x2, torch.nn.Linear(D_IN, D_OUT)


def _buggy_backward(ctx, grad):  # the public-port bug: local slice without all-reduce
    return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def _grads_on_rank(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's share of the batch; gradients averaged over ranks as DDP does."""
    x1, x2, layer = _data()
    part = slice(rank * N_LOCAL, (rank + 1) * N_LOCAL)
    value = NTXentLoss(TAU)(layer(x1[part]), layer(x2[part]))
    value.backward()
    grads = torch.cat([layer.weight.grad.flatten(), layer.bias.grad])
    dist.all_reduce(grads)
    mean_loss = value.detach().clone()
    dist.all_reduce(mean_loss)
    return mean_loss / WORLD, grads / WORLD


def _worker(rank: int, port: int, out_path: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        loss_value, grads = _grads_on_rank(rank)
        loss_mod._GatherWithGrad.backward = staticmethod(_buggy_backward)
        _, buggy_grads = _grads_on_rank(rank)
        if rank == 0:
            torch.save({"loss": loss_value, "grads": grads, "buggy_grads": buggy_grads}, out_path)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(180)
def test_ddp_gradients_equal_single_process(tmp_path):
    out = tmp_path / "rank0.pt"
    # spawn, not fork: a forked child of a parent that already ran OpenMP regions can hang.
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    got = torch.load(out, weights_only=True)

    x1, x2, layer = _data()
    ref = NTXentLoss(TAU, gather_distributed=False)(layer(x1), layer(x2))
    ref.backward()
    ref_grads = torch.cat([layer.weight.grad.flatten(), layer.bias.grad])

    assert got["loss"].item() == pytest.approx(ref.item(), abs=1e-6)
    torch.testing.assert_close(got["grads"], ref_grads, atol=1e-5, rtol=1e-5)
    # The known bug (backward returns the local slice without all-reduce) must be caught.
    assert not torch.allclose(got["buggy_grads"], ref_grads, atol=1e-5, rtol=1e-5)
