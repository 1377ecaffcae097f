"""Linear evaluation: both protocols, the encoder sanity check, and feature extraction."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kubeclr.config import EvalConfig, ModelConfig
from kubeclr.core.model import build_encoder
from kubeclr.eval import crops, linear
from kubeclr.eval.crops import EncoderChangedError, linear_eval_crops, snapshot
from kubeclr.eval.features import extract_features
from kubeclr.eval.linear import (
    L2_BOUNDS,
    MAX_EXTENSIONS,
    confusion_matrix,
    extend_direction,
    fit_logistic,
    linear_eval_features,
    standardization,
    topk_accuracy,
)

CPU = torch.device("cpu")
FAST = EvalConfig(l2_grid=(1e-4, 1e-2), max_iter=100, crops_epochs=1, batch_size=16)


def gaussian_features(n_per_class, classes, dim, separation, seed, random_labels=False):
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * separation
    out = {}
    for split in ("train", "val", "test"):
        y = torch.arange(n_per_class * classes) % classes
        x = centers[y] + torch.randn(len(y), dim, generator=gen)
        if random_labels:
            y = torch.randint(0, classes, (len(y),), generator=gen)
        out[f"{split}_x"], out[f"{split}_y"] = x * 3 + 5, y  # offset/scale: standardisation must undo it
    return out


def test_separable_features_reach_full_accuracy():
    feats = gaussian_features(30, 10, 32, separation=4.0, seed=0)
    names = [f"c{i}" for i in range(10)]
    out = linear_eval_features(feats, names, FAST, device=CPU)
    r = out.results
    assert r["test_top1"] >= 0.99 and r["val_top1"] >= 0.99 and r["test_top5"] == 1.0
    assert r["l2"] in FAST.l2_grid and r["protocol"] == "features"
    assert sum(map(sum, r["confusion"])) == 300
    assert set(r["per_class"]) == set(names)
    # the classifier applies as documented: logits = ((x - mean) / std) @ W.T + b
    c = out.classifier
    logits = ((feats["test_x"] - c["mean"]) / c["std"]) @ c["weight"].T + c["bias"]
    assert topk_accuracy(logits, feats["test_y"], 1) == r["test_top1"]


def test_random_labels_give_chance_accuracy():
    feats = gaussian_features(100, 4, 16, separation=0.0, seed=1, random_labels=True)
    r = linear_eval_features(feats, ["a", "b", "c", "d"], FAST, device=CPU).results
    assert 0.10 <= r["test_top1"] <= 0.40  # chance is 0.25 on 400 test points


def test_lbfgs_reaches_the_optimum():
    """At the returned weights the gradient of the regularised objective vanishes (convex: global optimum)."""
    feats = gaussian_features(20, 3, 6, separation=1.0, seed=2)
    mean, std = standardization(feats["train_x"])
    x, y, l2 = (feats["train_x"] - mean) / std, feats["train_y"], 1e-2
    head = fit_logistic(x, y, num_classes=3, l2=l2, max_iter=200)
    loss = F.cross_entropy(head(x), y) + 0.5 * l2 * head.weight.pow(2).sum()
    grads = torch.autograd.grad(loss, list(head.parameters()))
    assert max(float(g.abs().max()) for g in grads) < 1e-4


@pytest.mark.parametrize(
    ("sweep", "expected"),
    [
        ({1e-3: 0.5, 1e-2: 0.7, 1e-1: 0.9}, "up"),  # still rising at the strongest
        ({1e-3: 0.9, 1e-2: 0.7, 1e-1: 0.5}, "down"),  # still rising at the weakest
        ({1e-3: 0.5, 1e-2: 0.9, 1e-1: 0.5}, None),  # inside
        ({1e-3: 0.9, 1e-2: 0.9, 1e-1: 0.5}, None),  # a plateau reaching in from the bottom: found
        ({1e-3: 0.5, 1e-2: 0.9, 1e-1: 0.9}, None),  # ... and from the top (the tie rule picks 1e-2)
        ({1e-3: 0.9, 1e-2: 0.5, 1e-1: 0.9}, None),  # both edges tie: no one direction to go
        ({1e-3: 0.9}, None),  # one strength is a fixed choice, not a sweep
    ],
)
def test_extend_direction(sweep, expected):
    assert extend_direction(sweep) == expected


def few_noisy_samples(seed=0, dim=40, n_train=20, n_eval=500, separation=0.3):
    """Two Gaussian classes, as many training samples as dimensions: the weak-L2 fit is near the
    interpolation threshold and fits noise, strong L2 shrinks it towards the class means (the
    nearest-centroid limit), which is Bayes-optimal for isotropic noise, so val top-1 rises with L2."""
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(2, dim, generator=gen) * separation
    out = {}
    for split, n in (("train", n_train), ("val", n_eval), ("test", n_eval)):
        y = torch.arange(2 * n) % 2
        out[f"{split}_x"], out[f"{split}_y"] = centers[y] + torch.randn(len(y), dim, generator=gen), y
    return out


@pytest.mark.parametrize(
    ("grid", "cap", "tried"),
    [
        # the default grid: 10x steps up to the upper bound (3 steps, 10 <= 10)
        ((1e-6, 1e-5, 1e-4, 1e-3, 1e-2), MAX_EXTENSIONS, [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0]),
        # at most `cap` steps, then stop inside the bounds. The grid starts where L2 changes val
        # top-1 by 1-3 points a step: below ~1e-4 every fit tends to the same max-margin direction,
        # so their accuracies tie or differ in the solver's last digits, which vary with the CPU
        ((1e-3, 1e-2), 2, [1e-3, 1e-2, 0.1, 1.0]),
    ],
)
def test_sweep_extends_up_when_strong_regularisation_wins(grid, cap, tried, monkeypatch):
    monkeypatch.setattr(linear, "MAX_EXTENSIONS", cap)
    r = linear_eval_features(few_noisy_samples(), ["a", "b"], EvalConfig(l2_grid=grid, max_iter=200), device=CPU)
    r = r.results
    assert [p["l2"] for p in r["l2_sweep"]] == pytest.approx(tried, rel=1e-9)  # weakest first, all of them
    assert [p["extended"] for p in r["l2_sweep"]] == [s not in grid for s in tried]
    accs = [p["val_top1"] for p in r["l2_sweep"]]
    assert accs[-1] > max(accs[:-1])  # still rising where the sweep had to stop ...
    assert r["l2"] == pytest.approx(tried[-1]) and r["l2_at_bound"] is True  # ... which the results say
    assert len(tried) - len(grid) <= cap and r["l2"] <= L2_BOUNDS[1]


def correlated_pair(seed=0, n=1000, delta=1e-3):
    """Two features sharing one N(0, 1) factor, the class only in their difference (+-delta): the
    classes are separable, but only by weights of order 1/delta along (1, -1), which a strong L2
    forbids (it leaves the shared factor, which says nothing of the class)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for split in ("train", "val", "test"):
        y = torch.arange(n) % 2
        x = torch.randn(n, 1, generator=gen).repeat(1, 2)
        x[:, 0] += delta * (2 * y - 1)
        out[f"{split}_x"], out[f"{split}_y"] = x, y
    return out


def test_sweep_extends_down_when_weak_regularisation_wins():
    # delta 0.03: the classes need weights ~30 along (1, -1); L2 1e-2 allows part of that, 1e-3
    # all of it. (With delta 1e-3 the fits at 1e-5 and 1e-6 are so ill-conditioned that whether
    # 1e-6 separates the classes within max_iter depended on the CPU's float kernels.)
    grid = (1e-2, 1e-1)
    data = correlated_pair(delta=3e-2)
    r = linear_eval_features(data, ["a", "b"], EvalConfig(l2_grid=grid, max_iter=500), device=CPU).results
    sweep = {p["l2"]: p for p in r["l2_sweep"]}
    assert list(sweep) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1], rel=1e-9)
    assert [p["extended"] for p in sweep.values()] == [True, True, False, False]
    accs = [p["val_top1"] for p in sweep.values()]
    assert accs[2] > accs[3] + 0.1  # 1e-2, the bottom of the grid, won alone: the sweep went on down ...
    assert accs[1] > accs[2] + 0.1  # ... 1e-3 won alone again ...
    assert accs[0] == accs[1] == 1.0  # ... and 1e-4 found the plateau reaching in: the optimum is inside
    assert r["l2_at_bound"] is False
    assert r["l2"] == pytest.approx(1e-4)  # the tie rule (smaller strength) is kept
    assert r["test_top1"] == 1.0


def test_probe_agrees_with_scikit_learn_on_digits():
    """The probe against scikit-learn's ``LogisticRegression`` (multinomial, L-BFGS) on the same
    standardised pixels of the 8x8 digits, at the strength the probe chose on val.

    :func:`fit_logistic` minimises ``(1/n) sum_i CE_i + (l2/2) ||W||^2``; scikit-learn minimises
    ``C sum_i CE_i + (1/2) ||W||^2``. Dividing the first by ``l2`` gives the second with
    ``C = 1 / (n l2)``: the same minimiser (both leave the bias unpenalised and keep one weight row
    per class), so the two must predict alike, not only score alike.
    """
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(y))  # fixed split: 1000 / 400 / 397
    parts = {"train": perm[:1000], "val": perm[1000:1400], "test": perm[1400:]}
    feats = {}
    for split, idx in parts.items():
        feats[f"{split}_x"], feats[f"{split}_y"] = torch.tensor(x[idx], dtype=torch.float32), torch.tensor(y[idx])
    out = linear_eval_features(feats, [str(d) for d in range(10)], EvalConfig(), device=CPU)
    l2 = out.results["l2"]
    c = out.classifier
    z = {s: ((feats[f"{s}_x"] - c["mean"]) / c["std"]).numpy() for s in parts}  # the probe's standardisation
    ref = LogisticRegression(C=1 / (len(parts["train"]) * l2), max_iter=1000, tol=1e-6)
    ref.fit(z["train"], y[parts["train"]])
    assert abs(out.results["test_top1"] - ref.score(z["test"], y[parts["test"]])) <= 0.01
    probs = torch.softmax(torch.from_numpy(z["test"]) @ c["weight"].T + c["bias"], dim=1).numpy()
    assert np.abs(probs - ref.predict_proba(z["test"])).max() < 0.02
    assert out.results["test_top1"] > 0.9  # and the probe is a good one: digits are linearly easy


def test_topk_and_confusion_against_hand_computed_values():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    y = torch.tensor([0, 2, 1, 1])
    assert topk_accuracy(logits, y, 1) == 0.25
    assert topk_accuracy(logits, y, 2) == 0.75
    assert topk_accuracy(logits, y, 5) == 1.0
    ref = np.zeros((3, 3), dtype=np.int64)
    np.add.at(ref, (y.numpy(), logits.argmax(1).numpy()), 1)
    assert confusion_matrix(logits.argmax(1), y, 3).tolist() == ref.tolist() == [[1, 0, 0], [1, 0, 1], [0, 1, 0]]


def tiny_images(n, seed):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    noise = torch.randint(0, 40, (n, 3, 32, 32), generator=gen)
    images = (noise + (labels * 60).view(-1, 1, 1, 1)).to(torch.uint8)  # class = brightness
    return images, labels


@pytest.fixture(scope="module")
def crops_data():
    torch.manual_seed(0)
    encoder = build_encoder(ModelConfig(arch="resnet18", width=4))
    imgs, labs = {}, {}
    for i, split in enumerate(("train", "val", "test")):
        imgs[split], labs[split] = tiny_images(40 if split == "train" else 16, seed=i)
    return encoder, imgs, labs


def run_crops(encoder, imgs, labs, cfg=FAST):
    return linear_eval_crops(
        encoder,
        imgs,
        labs,
        ["a", "b", "c", "<d>"],
        (0.5, 0.5, 0.5),
        (0.25, 0.25, 0.25),
        cfg,
        crop_size=32,
        crop_scale=(0.08, 1.0),
        device=CPU,
        seed=0,
    )


def test_crops_protocol_runs_end_to_end_and_leaves_encoder_unchanged(crops_data):
    encoder, imgs, labs = crops_data
    before = snapshot(encoder)
    r = run_crops(encoder, imgs, labs).results
    assert r["protocol"] == "crops" and r["l2"] is None
    for key in ("val_top1", "val_top5", "test_top1", "test_top5"):
        assert 0.0 <= r[key] <= 1.0
    assert r["test_top5"] == 1.0  # 4 classes: top-5 covers all of them
    assert np.asarray(r["confusion"]).sum() == 16
    assert all(torch.equal(v, before[k]) for k, v in encoder.state_dict().items())


def test_crops_protocol_learns_an_easy_task(crops_data):
    """Classes differ in brightness, which the fixed random encoder's features separate (the
    features protocol finds it); 10 epochs of the crops protocol's SGD must find it too (chance
    is 0.25; a learning rate 100x too small stays there)."""
    encoder, imgs, labs = crops_data
    train_x, train_y = tiny_images(80, seed=0)
    imgs, labs = {**imgs, "train": train_x}, {**labs, "train": train_y}
    feats = {}
    for split in imgs:
        feats[f"{split}_x"] = extract_features(
            encoder, imgs[split], (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), batch_size=64, device=CPU
        )
        feats[f"{split}_y"] = labs[split]
    assert linear_eval_features(feats, list("abcd"), FAST, device=CPU).results["test_top1"] >= 0.9
    r = run_crops(encoder, imgs, labs, EvalConfig(crops_epochs=10, batch_size=16)).results
    assert r["test_top1"] >= 0.9 and r["val_top1"] >= 0.9


def test_sanity_check_fires_when_training_changes_the_encoder(crops_data, monkeypatch):
    encoder, imgs, labs = crops_data
    real = crops._train_one_epoch

    def leaky_epoch(enc, *args, **kwargs):
        loss = real(enc, *args, **kwargs)
        with torch.no_grad():
            next(enc.parameters()).add_(1e-3)  # the bug: a step that touches the backbone
        return loss

    monkeypatch.setattr(crops, "_train_one_epoch", leaky_epoch)
    with pytest.raises(EncoderChangedError, match="conv1.weight"):
        run_crops(encoder, imgs, labs)


def test_finetune_switch_trains_the_encoder(crops_data):
    _, imgs, labs = crops_data
    torch.manual_seed(1)
    encoder = build_encoder(ModelConfig(arch="resnet18", width=4))
    before = snapshot(encoder)
    small = {s: v[:16] for s, v in imgs.items()}
    run_crops(
        encoder, small, {s: v[:16] for s, v in labs.items()}, EvalConfig(crops_epochs=1, batch_size=16, finetune=True)
    )
    assert not torch.equal(encoder.state_dict()["conv1.weight"], before["conv1.weight"])


def test_extract_features_is_deterministic_eval_mode_and_matches_direct_forward(crops_data):
    encoder, imgs, _ = crops_data
    encoder.train()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    a = extract_features(encoder, imgs["train"].numpy(), mean, std, device=CPU, batch_size=7)
    b = extract_features(encoder, imgs["train"], mean, std, device=CPU, batch_size=40)
    assert a.shape == (40, encoder.feature_dim) and a.dtype == torch.float32
    assert encoder.training  # mode restored
    encoder.eval()
    with torch.no_grad():
        x = (imgs["train"].float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        direct = encoder(x)
    encoder.train()
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a, direct, rtol=1e-4, atol=1e-5)
