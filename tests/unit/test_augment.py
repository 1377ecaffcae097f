"""Batched SimCLR augmentation: geometry, per-sample randomness, colour ops vs torchvision."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.functional as TF

from kubeclr.config import AugmentConfig
from kubeclr.core import augment
from kubeclr.core.augment import SimCLRAugment, crop_resize, normalize, sample_crop_boxes

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)
IDENTITY = AugmentConfig(crop_scale=(1.0, 1.0), flip_p=0.0, color_strength=0.0, grayscale_p=0.0)


def _images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_shape_dtype_and_range():
    out = SimCLRAugment(AugmentConfig(size=24), MEAN, STD)(_images(16), _gen(0))
    assert out.shape == (16, 3, 24, 24) and out.dtype == torch.float32
    pixels = out * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5


def test_identity_settings_reproduce_normalised_input():
    images = _images(4)
    out = SimCLRAugment(IDENTITY, MEAN, STD)(images, _gen(0))
    torch.testing.assert_close(out, normalize(images, MEAN, STD), atol=1e-5, rtol=0)


def test_normalize_uint8_and_float_agree():
    images = _images(2)
    expected = (images.double() / 255 - torch.tensor(MEAN).double().view(1, 3, 1, 1)) / torch.tensor(STD).double().view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(normalize(images, MEAN, STD), expected.float())
    torch.testing.assert_close(normalize(images.float() / 255, MEAN, STD), expected.float())


def test_crop_resize_is_exact_for_pixel_aligned_boxes_and_flips():
    images = augment.to_float(_images(3))
    boxes = torch.tensor([[8.0, 4.0, 16.0, 16.0], [0.0, 0.0, 32.0, 32.0], [16.0, 16.0, 16.0, 16.0]])
    flip = torch.tensor([False, True, False])
    out = crop_resize(images[[0, 2]], boxes[[0, 2]], 16)
    torch.testing.assert_close(out[0], images[0, :, 8:24, 4:20])
    torch.testing.assert_close(out[1], images[2, :, 16:32, 16:32])
    full = crop_resize(images, boxes[[1, 1, 1]], 32, flip)
    torch.testing.assert_close(full[1], images[1].flip(-1))
    torch.testing.assert_close(full[0], images[0])


def test_crop_boxes_within_scale_ratio_and_image():
    scale = (0.08, 1.0)
    boxes = sample_crop_boxes(5000, 32, 32, scale, generator=_gen(1))
    top, left, h, w = boxes.unbind(1)
    area = h * w / (32 * 32)
    assert area.min() >= scale[0] - 1e-6 and area.max() <= scale[1] + 1e-6
    assert (w / h).min() >= 3 / 4 - 1e-5 and (w / h).max() <= 4 / 3 + 1e-5
    assert top.min() >= 0 and left.min() >= 0
    assert (top + h).max() <= 32 + 1e-4 and (left + w).max() <= 32 + 1e-4
    # the sampled areas cover the range (not a degenerate sampler)
    assert area.min() < 0.1 and area.max() > 0.9


def test_crop_boxes_follow_torchvisions_distribution():
    """Area fraction, aspect ratio and box position have the distribution of torchvision's
    RandomResizedCrop.get_params (the reference transform of the SimCLR recipe; the quality benchmark's
    plain SimCLR uses it), up to its whole-pixel rounding."""
    from torchvision.transforms import RandomResizedCrop

    n, size = 4000, 32
    ours = sample_crop_boxes(n, size, size, (0.08, 1.0), generator=_gen(5))
    torch.manual_seed(5)
    ref = torch.tensor(
        [RandomResizedCrop.get_params(torch.empty(3, size, size), [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)],
        dtype=torch.float32,
    )  # (n, 4): top, left, h, w

    def stats(boxes):
        top, left, h, w = boxes.unbind(1)
        area, log_aspect = h * w / size**2, (w / h).log()
        centre = torch.cat([(top + h / 2) / size, (left + w / 2) / size])
        qs = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9])
        return area.quantile(qs), log_aspect.quantile(qs), centre.quantile(qs)

    for mine, theirs, tol in zip(stats(ours), stats(ref), (0.03, 0.04, 0.03)):
        torch.testing.assert_close(mine, theirs, atol=tol, rtol=0)


def test_crop_boxes_narrow_scale():
    boxes = sample_crop_boxes(1000, 20, 40, (0.5, 0.6), generator=_gen(2))
    area = boxes[:, 2] * boxes[:, 3] / (20 * 40)
    assert area.min() >= 0.5 - 1e-6 and area.max() <= 0.6 + 1e-6


def test_samples_get_independent_parameters():
    one = _images(1)
    batch = one.expand(8, -1, -1, -1).contiguous()
    out = SimCLRAugment(AugmentConfig(), MEAN, STD)(batch, _gen(0))
    diffs = [(out[i] - out[j]).abs().max().item() for i in range(8) for j in range(i + 1, 8)]
    assert min(diffs) > 1e-3
    boxes = sample_crop_boxes(8, 32, 32, generator=_gen(0))
    assert len({tuple(b.tolist()) for b in boxes}) == 8


def test_deterministic_given_seed_and_views_differ():
    aug, images = SimCLRAugment(AugmentConfig(blur=True), MEAN, STD), _images(8)
    a1, a2 = augment.paired_views(aug, images, _gen(7)).chunk(2)
    b1, b2 = augment.paired_views(aug, images, _gen(7)).chunk(2)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not torch.allclose(a1, a2)
    assert not torch.allclose(aug(images, _gen(8)), a1)


def test_grayscale_fraction_close_to_p():
    cfg = AugmentConfig(size=8, crop_scale=(1.0, 1.0), flip_p=0.0, color_strength=0.0, grayscale_p=0.2)
    images = _images(2000, size=8)
    out = SimCLRAugment(cfg, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))(images, _gen(3))
    is_gray = ((out[:, 0] - out[:, 1]).abs().amax((1, 2)) < 1e-6) & ((out[:, 1] - out[:, 2]).abs().amax((1, 2)) < 1e-6)
    # binomial(2000, 0.2): sd ~ 0.009, so ±0.035 is ~4 sd
    assert abs(is_gray.float().mean().item() - 0.2) < 0.035


def test_colour_jitter_probability_and_strength_zero():
    x = augment.to_float(_images(400, size=8))
    untouched = augment.color_jitter(x, 0.0, 1.0, _gen(0))
    assert torch.equal(untouched, x)
    jittered = augment.color_jitter(x, 0.5, 0.8, _gen(0))
    changed = (jittered - x).abs().amax((1, 2, 3)) > 1e-4
    assert abs(changed.float().mean().item() - 0.8) < 0.08
    assert jittered.min() >= 0 and jittered.max() <= 1


@pytest.mark.parametrize(
    "name, ours, theirs, factor",
    [
        ("brightness", augment.adjust_brightness, TF.adjust_brightness, 1.3),
        ("contrast", augment.adjust_contrast, TF.adjust_contrast, 0.6),
        ("saturation", augment.adjust_saturation, TF.adjust_saturation, 1.4),
        ("hue", augment.adjust_hue, TF.adjust_hue, -0.1),
    ],
)
def test_colour_ops_match_torchvision(name, ours, theirs, factor):
    x = augment.to_float(_images(3, size=8))
    torch.testing.assert_close(ours(x, torch.full((3,), factor)), theirs(x, factor), atol=2e-6, rtol=0)


@pytest.mark.parametrize("p, select", [(1.0, None), (0.6, True), (0.6, False)])
def test_colour_jitter_matches_torchvision_in_each_samples_own_order(p, select):
    n, strength = 24, 1.0
    x = augment.to_float(_images(n, size=6))
    out = augment.color_jitter(x, strength, p, _gen(5), select=select)
    # Oracle: replay the same draws (apply, 3 factors, hue shift, order) and run
    # torchvision's functional ops one sample at a time, in that sample's order;
    # samples not drawn for jitter must come back bitwise unchanged.
    g, j = _gen(5), 0.8 * strength
    apply = torch.rand((n,), generator=g) < p
    assert 0 < int(apply.sum()) <= n and (p == 1.0 or not apply.all())
    factors = [(1 - j) + 2 * j * torch.rand((n,), generator=g) for _ in range(3)]
    shift = -0.2 * strength + 0.4 * strength * torch.rand((n,), generator=g)
    order = torch.rand((n, 4), generator=g).argsort(1)
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    values = factors + [shift]
    assert len({tuple(o.tolist()) for o in order}) > 5  # genuinely different orders
    for i in range(n):
        y = x[i]
        if not apply[i]:
            assert torch.equal(out[i], y)
            continue
        for op_id in order[i].tolist():
            y = ops[op_id](y, values[op_id][i].item())
        torch.testing.assert_close(out[i], y, atol=1e-5, rtol=0)


def test_colour_jitter_selected_and_masked_paths_agree_and_convert_to_hsv_once(monkeypatch):
    """The CPU path (only the drawn samples) and the sync-free device path (all, then where) agree."""
    x = augment.to_float(_images(64, size=8))
    calls = []
    real = augment.rgb_to_hsv
    monkeypatch.setattr(augment, "rgb_to_hsv", lambda t: calls.append(t.shape[0]) or real(t))
    picked = augment.color_jitter(x, 0.5, 0.8, _gen(3), select=True)
    masked = augment.color_jitter(x, 0.5, 0.8, _gen(3), select=False)
    torch.testing.assert_close(picked, masked, atol=1e-6, rtol=0)
    # one HSV round trip per call (not one per position), on the drawn samples only in the CPU path
    assert len(calls) == 2 and calls[1] == 64 and 40 <= calls[0] < 64


def test_paired_views_stack_two_views_of_each_image():
    images = _images(5)
    plain = SimCLRAugment(IDENTITY, MEAN, STD)
    out = augment.paired_views(plain, images, _gen(0))
    assert out.shape == (10, 3, 32, 32)
    torch.testing.assert_close(out[:5], normalize(images, MEAN, STD), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[5:], normalize(images, MEAN, STD), atol=1e-5, rtol=0)
    aug = SimCLRAugment(AugmentConfig(), MEAN, STD)
    pairs = augment.paired_views(aug, images, _gen(4))
    assert torch.equal(pairs, aug(torch.cat([images, images]), _gen(4)))  # one call on the batch stacked twice
    assert not torch.allclose(pairs[:5], pairs[5:])


def test_hsv_round_trip():
    x = augment.to_float(_images(4, size=8))
    torch.testing.assert_close(augment.hsv_to_rgb(augment.rgb_to_hsv(x)), x, atol=2e-6, rtol=0)


def test_gaussian_blur_keeps_constants_and_smooths():
    flat = torch.full((2, 3, 16, 16), 0.4)
    torch.testing.assert_close(augment.gaussian_blur(flat, torch.tensor([0.5, 2.0])), flat)
    noise = augment.to_float(_images(2, size=16))
    blurred = augment.gaussian_blur(noise, torch.tensor([0.1, 2.0]))
    assert blurred[1].std() < noise[1].std() * 0.8
    torch.testing.assert_close(blurred[0], noise[0], atol=1e-4, rtol=0)  # sigma 0.1 ~ identity


def test_random_resized_crop_for_the_crops_protocol():
    out = augment.random_resized_crop(_images(5), 32, (0.5, 1.0), generator=_gen(0))
    assert out.shape == (5, 3, 32, 32) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_cuda_with_a_cuda_generator():
    images = _images(32).cuda()
    g1 = torch.Generator(device="cuda").manual_seed(0)
    g2 = torch.Generator(device="cuda").manual_seed(0)
    aug = SimCLRAugment(AugmentConfig(blur=True), MEAN, STD)
    out = aug(images, g1)
    assert out.device.type == "cuda" and out.shape == (32, 3, 32, 32)
    assert torch.equal(out, aug(images, g2))
    assert math.isfinite(out.sum().item())


@pytest.mark.parametrize(
    "cfg, n_draws",
    [(AugmentConfig(), 12), (AugmentConfig(blur=True), 14), (AugmentConfig(color_strength=0.0), 6)],
    ids=["default", "blur", "no-colour"],
)
def test_draw_step_is_the_generators_stream_in_the_documented_order(cfg, n_draws):
    """The draw step is only ``torch.rand`` calls (everything else is the pure, compilable step), made in the
    order and shapes that saved generator states rely on; the module is draw then augment_batch."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(str(func))
            return func(*args, **(kwargs or {}))

    n, cpu = 8, torch.device("cpu")
    with Ops() as ops:
        u = augment.draw(n, cfg, _gen(4), cpu)
    assert ops.names == ["aten.rand.generator"] * n_draws
    g = _gen(4)
    shapes = [(n, 10), (n, 10), (n,), (n,), (n,)] + ([(n,)] * 5 + [(n, 4)] if cfg.color_strength > 0 else [])
    shapes += [(n,)] * (3 if cfg.blur else 1)
    replay = [torch.rand(s, generator=g) for s in shapes]
    jit = [] if u.jitter is None else [getattr(u.jitter, f) for f in augment.JitterDraws.__dataclass_fields__]
    drawn = [u.crop.area, u.crop.aspect, u.crop.top, u.crop.left, u.flip, *jit, u.gray]
    drawn += [u.blur, u.sigma] if cfg.blur else []
    assert len(drawn) == len(replay) and all(torch.equal(a, b) for a, b in zip(drawn, replay))
    images, aug = _images(n), SimCLRAugment(cfg, MEAN, STD)
    g_module = _gen(4)
    with Ops() as ops:
        out = aug(images, g_module)
    assert len(ops.names) > 10 * n_draws  # the eager kernels that compile=True fuses
    mean, std = torch.tensor(MEAN), torch.tensor(STD)
    assert torch.equal(out, augment.augment_batch(images, u, cfg, mean, std, select=True))
    assert torch.equal(g_module.get_state(), g.get_state())
