"""Weighted kNN (Wu et al. 2018) against a brute-force NumPy reference."""

import numpy as np
import pytest
import torch

from kubeclr.eval.knn import knn_accuracy, knn_predict, knn_scores


def reference_votes(train_x, train_y, query_x, k, temperature, num_classes):
    """Straight from the paper: cosine similarity, top-k, exp(sim / tau) votes per class."""
    bank = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    votes = np.zeros((len(query_x), num_classes))
    for i, q in enumerate(query_x):
        sim = bank @ (q / np.linalg.norm(q))
        top = np.argsort(-sim)[:k]
        for j in top:
            votes[i, train_y[j]] += np.exp(sim[j] / temperature)
    return votes


@pytest.mark.parametrize("k,temperature", [(1, 0.1), (5, 0.07), (20, 0.5), (1000, 0.1)])
def test_knn_matches_numpy_reference(k, temperature):
    rng = np.random.default_rng(k)
    train_x = rng.normal(size=(60, 8)).astype(np.float32)
    train_y = rng.integers(0, 4, size=60)
    query_x = rng.normal(size=(25, 8)).astype(np.float32)
    ref = reference_votes(train_x, train_y, query_x, min(k, 60), temperature, 4)
    votes = knn_scores(
        torch.from_numpy(train_x),
        torch.from_numpy(train_y),
        torch.from_numpy(query_x),
        k=k,
        temperature=temperature,
        num_classes=4,
        batch_size=7,
    )
    np.testing.assert_allclose(votes.numpy(), ref, rtol=1e-4)
    pred = knn_predict(
        torch.from_numpy(train_x),
        torch.from_numpy(train_y),
        torch.from_numpy(query_x),
        k=k,
        temperature=temperature,
        num_classes=4,
    )
    assert pred.tolist() == ref.argmax(axis=1).tolist()


def test_knn_is_scale_invariant_and_separates_clusters():
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 16, generator=gen) * 5
    train_y = torch.arange(90) % 3
    test_y = torch.arange(30) % 3
    train_x = centers[train_y] + torch.randn(90, 16, generator=gen)
    test_x = centers[test_y] + torch.randn(30, 16, generator=gen)
    acc = knn_accuracy(train_x, train_y, test_x * 7.0, test_y, k=10, temperature=0.1, num_classes=3)
    assert acc == 1.0
    # a wrong label bank must be visible in the accuracy
    assert knn_accuracy(train_x, (train_y + 1) % 3, test_x, test_y, k=10, temperature=0.1, num_classes=3) == 0.0
