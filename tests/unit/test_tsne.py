"""Exact t-SNE (van der Maaten & Hinton 2008): calibration, gradient, and clusters."""

import torch

from kubeclr.eval.tsne import balanced_indices, conditional_affinities, kl_gradient, squared_distances, tsne


def clusters(n=200, k=4, dim=30, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, dim, generator=gen) * 8
    labels = torch.arange(n) % k
    return centers[labels] + torch.randn(n, dim, generator=gen), labels


def test_affinities_reach_the_target_perplexity():
    x, _ = clusters(n=120)
    p = conditional_affinities(squared_distances(x), perplexity=15.0)
    assert torch.allclose(p.sum(dim=1), torch.ones(120, dtype=p.dtype))
    assert torch.all(p.diagonal() == 0)
    entropy = -(p * p.clamp_min(1e-300).log()).sum(dim=1)
    assert torch.allclose(entropy.exp(), torch.full((120,), 15.0, dtype=p.dtype), rtol=1e-3)


def test_gradient_matches_autograd_of_kl():
    x, _ = clusters(n=40)
    p = conditional_affinities(squared_distances(x), perplexity=8.0)
    p = (p + p.T) / (2 * 40)
    y = torch.randn(40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    d2 = ((y[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    num = (1 / (1 + d2)) * (1 - torch.eye(40, dtype=y.dtype))
    q = num / num.sum()
    off = ~torch.eye(40, dtype=torch.bool)
    kl = (p[off] * (p[off] / q[off]).log()).sum()
    (auto,) = torch.autograd.grad(kl, y)
    assert torch.allclose(kl_gradient(p, y.detach()), auto, rtol=1e-6, atol=1e-10)


def test_clusters_stay_separated_and_runs_are_deterministic():
    x, labels = clusters()
    emb = tsne(x, perplexity=20.0, seed=3)
    assert emb.shape == (200, 2) and emb.dtype == torch.float32 and torch.isfinite(emb).all()
    d = torch.cdist(emb, emb) + torch.eye(200) * 1e9
    nearest = d.argmin(dim=1)
    assert (labels[nearest] == labels).float().mean() == 1.0  # leave-one-out 1-NN in 2-D
    # clusters are far apart relative to their size
    centroids = torch.stack([emb[labels == c].mean(0) for c in range(4)])
    spread = max(float((emb[labels == c] - centroids[c]).norm(dim=1).max()) for c in range(4))
    assert float(torch.pdist(centroids).min()) > spread
    assert torch.equal(emb, tsne(x, perplexity=20.0, seed=3))


def test_balanced_indices_balance_classes():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = balanced_indices(labels, 30, seed=0)
    assert len(set(idx.tolist())) == 30
    assert torch.bincount(labels[idx]).tolist() == [10, 10, 10]
    assert torch.equal(balanced_indices(labels, 500), torch.arange(100))
