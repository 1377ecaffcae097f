"""ResNet encoder, projection head and initialisation."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from kubeclr.config import ModelConfig
from kubeclr.core import model as model_mod
from kubeclr.core.model import build_encoder, build_head, build_model, load_init_weights
from kubeclr.errors import ConfigError, UserError

EXPANSION = {"resnet18": 1, "resnet34": 1, "resnet50": 4}


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
@pytest.mark.parametrize("stem", ["cifar", "imagenet"])
def test_shapes_and_feature_dim(arch, stem):
    cfg = ModelConfig(arch=arch, width=4, stem=stem, proj_dim=16)
    m = build_model(cfg)
    h, z = m(torch.randn(2, 3, 32, 32))
    assert m.encoder.feature_dim == 8 * 4 * EXPANSION[arch]
    assert h.shape == (2, m.encoder.feature_dim) and z.shape == (2, 16)


def test_stems_differ_in_resolution():
    seen = {}
    for stem in ("cifar", "imagenet"):
        enc = build_encoder(ModelConfig(width=4, stem=stem))
        x = enc.maxpool(enc.relu(enc.bn1(enc.conv1(torch.randn(1, 3, 32, 32)))))
        seen[stem] = enc.layer1(x).shape[-1]
        assert isinstance(enc.fc, nn.Identity)
    assert seen == {"cifar": 32, "imagenet": 8}
    assert build_encoder(ModelConfig(width=4)).conv1.kernel_size == (3, 3)


def test_standard_width_matches_torchvision_names_and_shapes():
    enc = build_encoder(ModelConfig(arch="resnet18", width=64, stem="imagenet"))
    ref = {k: v.shape for k, v in torchvision.models.resnet18().state_dict().items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in enc.state_dict().items()} == ref
    assert enc.feature_dim == 512


def test_mlp_and_linear_heads():
    mlp = build_head(ModelConfig(proj_dim=8), feature_dim=32)
    assert [type(m).__name__ for m in mlp] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert mlp[0].out_features == 32  # hidden defaults to the feature dim
    bn = build_head(ModelConfig(proj_dim=8, proj_hidden=12, proj_final_bn=True), feature_dim=32)
    assert bn[0].out_features == 12 and isinstance(bn[-1], nn.BatchNorm1d)
    assert bn(torch.randn(4, 32)).shape == (4, 8)
    lin = build_head(ModelConfig(head="linear", proj_dim=8), feature_dim=32)
    assert isinstance(lin, nn.Linear) and lin(torch.randn(4, 32)).shape == (4, 8)


def test_state_dict_round_trip_with_weights_only(tmp_path):
    cfg = ModelConfig(width=4)
    torch.manual_seed(0)
    enc = build_encoder(cfg).eval()
    path = tmp_path / "encoder.pt"
    torch.save(enc.state_dict(), path)
    torch.manual_seed(1)
    fresh = build_encoder(cfg).eval()
    fresh.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(enc(x), fresh(x))


def test_init_random_is_a_no_op():
    enc = build_encoder(ModelConfig(width=4))
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    load_init_weights(enc, ModelConfig(width=4), None)
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())


def test_init_from_uri_state_dict_ignores_fc_and_ddp_prefix():
    cfg = ModelConfig(width=4, init="file:///tmp/enc.pt")
    torch.manual_seed(0)
    source = build_encoder(cfg)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["module.fc.weight"] = torch.zeros(10, 32)
    torch.manual_seed(1)
    target = build_encoder(cfg)
    load_init_weights(target, cfg, state)
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in target.state_dict().items())


def test_init_from_uri_rejects_a_mismatched_state_dict():
    cfg = ModelConfig(width=4, init="s3://bucket/enc.pt")
    wrong = build_encoder(ModelConfig(width=8)).state_dict()
    with pytest.raises(UserError, match=r"s3://bucket/enc.pt does not fit resnet18 width 4 \(key 'conv1.weight'"):
        load_init_weights(build_encoder(cfg), cfg, wrong)
    with pytest.raises(UserError, match="missing key"):
        load_init_weights(build_encoder(cfg), cfg, {"conv1.weight": torch.zeros(4, 3, 3, 3)})
    with pytest.raises(ConfigError, match="no state dict"):
        load_init_weights(build_encoder(cfg), cfg, None)


def test_init_imagenet_needs_standard_width():
    with pytest.raises(ConfigError, match="width=64"):
        load_init_weights(build_encoder(ModelConfig(width=8)), ModelConfig(width=8, init="imagenet"))


def test_init_imagenet_offline_is_a_clear_user_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    cfg = ModelConfig(init="imagenet")
    with pytest.raises(
        UserError,
        match=r"cannot fetch resnet18 weights from https://download\.pytorch\.org/.*"
        r"name resolution",
    ):
        load_init_weights(build_encoder(cfg), cfg)


def test_init_imagenet_with_cifar_stem_keeps_random_conv1(monkeypatch):
    torch.manual_seed(0)
    imagenet = torchvision.models.resnet18().state_dict()
    calls = []

    def fake_download(url, **kwargs):
        calls.append((url, kwargs.get("weights_only")))
        return imagenet

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    cfg = ModelConfig(init="imagenet", stem="cifar")
    enc = build_encoder(cfg)
    conv1 = enc.conv1.weight.detach().clone()
    load_init_weights(enc, cfg)
    assert calls == [(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url, True)]
    assert torch.equal(enc.conv1.weight, conv1) and enc.conv1.weight.shape == (64, 3, 3, 3)
    assert torch.equal(enc.layer4[1].conv2.weight, imagenet["layer4.1.conv2.weight"])
    assert torch.equal(enc.bn1.running_mean, imagenet["bn1.running_mean"])


def test_no_cuda_calls_in_model_source():
    source = Path(model_mod.__file__).read_text()
    assert ".cuda(" not in source


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_feature_dim_without_building_the_encoder(arch):
    from kubeclr.config import ModelConfig
    from kubeclr.core.model import build_encoder, feature_dim

    cfg = ModelConfig(arch=arch, width=8)
    assert feature_dim(cfg) == build_encoder(cfg).feature_dim == 8 * 8 * (4 if arch == "resnet50" else 1)
