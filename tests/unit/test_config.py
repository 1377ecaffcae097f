"""Config: presets load, overrides parse by type, bad keys/values fail with one line."""

import dataclasses

import pytest

from kubeclr.config import Config, load_config, preset_names
from kubeclr.errors import ConfigError


def test_presets_ship_and_load():
    assert set(preset_names()) >= {"smoke", "seed", "paper", "fast"}
    for name in preset_names():
        cfg = load_config(name)
        assert Config.from_dict(cfg.to_dict()) == cfg  # round trip


def test_paper_and_seed_recipes():
    paper, seed = load_config("paper"), load_config("seed")
    assert (paper.model.arch, paper.model.stem, paper.pretrain.batch_size) == ("resnet50", "cifar", 1024)
    assert (paper.pretrain.temperature, paper.pretrain.weight_decay, paper.augment.blur) == (0.5, 1e-6, False)
    assert (seed.model.init, seed.pretrain.batch_size, seed.pretrain.lr, seed.pretrain.lr_scaling) == \
        ("imagenet", 128, 0.2, "none")
    assert seed.pretrain.epochs == 100 and seed.pretrain.warmup_epochs == 10 and seed.model.proj_final_bn


def test_overrides_are_parsed_by_field_type():
    cfg = load_config("smoke", overrides=["pretrain.epochs=7", "pretrain.lr=0.5", "pretrain.compile=true",
                                          "augment.crop_scale=0.2,0.9", "model.arch=resnet34",
                                          "eval.l2_grid=[0.1, 1]"])
    assert cfg.pretrain.epochs == 7 and isinstance(cfg.pretrain.epochs, int)
    assert cfg.pretrain.lr == 0.5 and cfg.pretrain.compile is True
    assert cfg.augment.crop_scale == (0.2, 0.9)
    assert cfg.model.arch == "resnet34" and cfg.eval.l2_grid == (0.1, 1.0)


def test_config_is_frozen():
    cfg = load_config("smoke")
    with pytest.raises(Exception):
        cfg.pretrain.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize("override, fragment", [
    ("pretrain.epochs=-1", "pretrain.epochs=-1 is out of range (allowed: >= 1)"),
    ("pretrain.temperature=0", "pretrain.temperature=0.0 is out of range (allowed: > 0)"),
    ("pretrain.batch_size=1", "pretrain.batch_size=1 is out of range (allowed: >= 2)"),
    ("pretrain.epochs=ten", "pretrain.epochs='ten' is not an integer"),
    ("pretrain.compile=maybe", "is not a boolean"),
    ("model.arch=vgg16", "one of resnet18, resnet34, resnet50"),
    ("pretrain.optimizer=adam", "one of lars, sgd, adamw"),
    ("model.colour=red", "unknown key 'colour' in section 'model'"),
    ("training.epochs=3", "section one of data, model"),
    ("augment.crop_scale=0.9,0.1", "0 < min <= max <= 1"),
    ("data.val_split=half", "'batch5' or 'random:<fraction in (0,1)>'"),
    ("pretrain.epochs", "expected section.key=value"),
    ("pretrain.lr=nan", "pretrain.lr='nan' is not a finite number"),
    ("pretrain.temperature=inf", "is not a finite number"),
    ("augment.crop_scale=[0.1,", "augment.crop_scale='[0.1,' is not a list"),
])
def test_bad_overrides_fail_with_one_line_naming_the_key(override, fragment):
    with pytest.raises(ConfigError) as err:
        load_config("smoke", overrides=[override])
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_config("nope")
    with pytest.raises(ConfigError, match="config file .*missing.yaml"):
        load_config(path=tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("pretrain:\n  epochs: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path=bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("pretrain:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'pretrain.epoch'"):
        load_config(path=typo)


def test_keys_listing_shows_rule_and_help_of_every_key():
    from kubeclr.config import describe_keys

    lines = {line.split()[0]: line for line in describe_keys().splitlines()}
    assert lines["data.train_limit"] == ("  data.train_limit (int, default 0, >= 0): "
                                         "stratified subset size of train (0 = all)")
    assert lines["model.arch"] == "  model.arch (str, default 'resnet18', one of resnet18, resnet34, resnet50)"
    assert "pretrain.knn_every" in lines and "held out of the labelled bank" in lines["pretrain.knn_every"]
    assert len(lines) == sum(len(dataclasses.fields(s.default_factory)) for s in dataclasses.fields(Config))
