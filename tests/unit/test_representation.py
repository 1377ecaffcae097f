"""The label-free measures against oracles: a hand-computed spectrum, collapse, full rank, NumPy loops."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from kubeclr.config import AugmentConfig
from kubeclr.eval.representation import RANKME_EPS, alignment, measure, rankme, sample_indices, uniformity


def _with_spectrum(singular_values, n=40, d=12, seed=0):
    """An (n, d) matrix whose singular values are exactly ``singular_values`` (random orthonormal frames)."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(n, len(singular_values))))
    v, _ = np.linalg.qr(rng.normal(size=(d, len(singular_values))))
    return torch.from_numpy(u @ np.diag(singular_values) @ v.T)


def test_rankme_of_a_known_spectrum_by_hand():
    s = [4.0, 2.0, 1.0, 1.0]
    x = _with_spectrum(s)
    p = [v / sum(s) + RANKME_EPS for v in s]
    p += [RANKME_EPS] * (12 - len(s))  # the 8 zero singular values of a rank-4 (40, 12) matrix
    expected = math.exp(-sum(q * math.log(q) for q in p))
    assert rankme(x) == pytest.approx(expected, rel=1e-6)
    assert 3.0 < rankme(x) < 4.0  # four directions, unequal: fewer than 4 effective


def test_a_constant_encoder_has_rank_one_and_an_orthogonal_one_full_rank():
    constant = torch.ones(50, 16) * 0.3  # every image to the same vector: collapse
    assert rankme(constant) == pytest.approx(1.0, abs=1e-4)
    q, _ = torch.linalg.qr(torch.randn(32, 32, dtype=torch.float64))
    assert rankme(q * 5.0) == pytest.approx(32.0, rel=1e-4)  # equal singular values: every dimension counts
    assert rankme(torch.zeros(10, 4)) == 1.0 and rankme(torch.zeros(0, 4)) == 1.0


def _normed(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_alignment_and_uniformity_equal_the_direct_formulas():
    rng = np.random.default_rng(1)
    z1, z2 = rng.normal(size=(30, 8)), rng.normal(size=(30, 8))
    a, b = _normed(z1), _normed(z2)
    align = np.mean([np.sum((a[i] - b[i]) ** 2) for i in range(30)])
    pairs = [np.exp(-2.0 * np.sum((a[i] - a[j]) ** 2)) for i in range(30) for j in range(i + 1, 30)]
    assert alignment(torch.from_numpy(z1), torch.from_numpy(z2)) == pytest.approx(align, rel=1e-9)
    assert uniformity(torch.from_numpy(z1)) == pytest.approx(np.log(np.mean(pairs)), rel=1e-9)
    assert alignment(torch.from_numpy(z1), torch.from_numpy(z1 * 3.0)) == pytest.approx(0.0, abs=1e-12)
    assert uniformity(torch.ones(5, 3)) == pytest.approx(0.0, abs=1e-12)  # all one point: the maximum
    with pytest.raises(ValueError, match="at least two"):
        uniformity(torch.ones(1, 3))


def test_sample_indices_is_seeded_sorted_and_bounded():
    assert sample_indices(10, seed=0, limit=20).tolist() == list(range(10))
    a, b = sample_indices(1000, seed=3, limit=64), sample_indices(1000, seed=3, limit=64)
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 64 and (np.diff(a) > 0).all()
    assert a.tolist() != sample_indices(1000, seed=4, limit=64).tolist()


class _Pool(nn.Module):
    """Mean colour per channel, plus a constant: a tiny deterministic 'encoder'."""

    feature_dim = 4

    def forward(self, x):
        return torch.cat([x.mean(dim=(2, 3)), torch.ones(x.shape[0], 1)], dim=1)


class _Constant(nn.Module):
    feature_dim = 4

    def forward(self, x):
        return torch.ones(x.shape[0], 4)


def test_measure_on_held_out_images():
    images = np.random.default_rng(0).integers(0, 256, size=(20, 3, 16, 16), dtype=np.uint8)
    mean, std = [0.5] * 3, [0.25] * 3
    aug = AugmentConfig(size=16, blur=False)
    cpu = torch.device("cpu")
    pool = _Pool()
    from kubeclr.eval.features import extract_features

    feats = extract_features(pool, images, mean, std, device=cpu)
    out = measure(pool, images, feats, mean, std, aug, device=cpu, seed=0)
    assert set(out) == {"rankme", "alignment", "uniformity", "n_images", "feature_dim"}
    assert (out["n_images"], out["feature_dim"]) == (20, 4)
    assert out["rankme"] == pytest.approx(rankme(feats)) and out["uniformity"] == pytest.approx(uniformity(feats))
    assert out == measure(pool, images, feats, mean, std, aug, device=cpu, seed=0)  # seeded views
    assert 0.0 < out["alignment"] < 4.0
    flat = measure(_Constant(), images, torch.ones(20, 4), mean, std, aug, device=cpu, seed=0)
    assert flat["alignment"] == pytest.approx(0.0, abs=1e-12) and flat["rankme"] == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="at least 2"):
        measure(pool, images[:1], feats[:1], mean, std, aug, device=cpu, seed=0)


def test_metrics_json_takes_the_block_or_null_and_refuses_a_bad_one():
    from kubeclr.report.metrics import _CHECKS

    ok, _ = _CHECKS["representation"]
    good = {"rankme": 41.7, "alignment": 0.41, "uniformity": -2.3, "n_images": 300, "feature_dim": 64}
    assert ok(good) and ok(None)
    assert not ok({**good, "rankme": float("nan")}) and not ok({**good, "n_images": -1})
    assert not ok({k: v for k, v in good.items() if k != "uniformity"}) and not ok([1, 2])


def test_the_report_explains_each_measure():
    from kubeclr.report.render import representation_rows

    rows = representation_rows(
        {"rankme": 41.7, "alignment": 0.412, "uniformity": -2.31, "n_images": 9, "feature_dim": 64}
    )
    assert [r[:2] for r in rows] == [
        ("RankMe (effective rank)", "41.7 of 64"),
        ("alignment", "0.412"),
        ("uniformity", "-2.310"),
    ]
    assert all(len(r[2]) > 40 for r in rows) and representation_rows(None) == []


class _TwoHeads(nn.Module):
    """(h, z): the pooled colours and, as z, a fixed linear map of them."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = _Pool()
        self.proj = nn.Linear(4, 3)
        torch.nn.init.eye_(self.proj.weight)

    def forward(self, x):
        h = self.pool(x)
        return h, self.proj(h)


def test_the_heads_measures_are_taken_on_z():
    from kubeclr.core.augment import normalize
    from kubeclr.eval.representation import measure_head

    images = np.random.default_rng(1).integers(0, 256, size=(12, 3, 16, 16), dtype=np.uint8)
    mean, std, aug = [0.5] * 3, [0.25] * 3, AugmentConfig(size=16)
    model = _TwoHeads()
    out = measure_head(model, images, mean, std, aug, device=torch.device("cpu"), seed=0)
    with torch.no_grad():
        z = model.eval()(normalize(torch.from_numpy(images), mean, std))[1]
    assert (out["n_images"], out["dim"]) == (12, 3) and out["uniformity"] == pytest.approx(uniformity(z))
    assert 0.0 < out["alignment"] < 4.0 and out == measure_head(
        model, images, mean, std, aug, device=torch.device("cpu"), seed=0
    )
