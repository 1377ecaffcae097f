"""Config: presets load, overrides parse by type, bad keys/values fail with one line."""

import dataclasses
import re

import pytest

from kubeclr.config import Config, load_config, preset_names
from kubeclr.errors import ConfigError


def test_presets_ship_and_load():
    assert set(preset_names()) >= {"smoke", "article", "paper", "fast"}
    for name in preset_names():
        cfg = load_config(name)
        assert Config.from_dict(cfg.to_dict()) == cfg  # round trip


def test_paper_and_article_recipes():
    paper, seed = load_config("paper"), load_config("article")
    assert (paper.model.arch, paper.model.stem, paper.pretrain.batch_size) == ("resnet50", "cifar", 1024)
    assert (paper.pretrain.temperature, paper.pretrain.weight_decay, paper.augment.blur) == (0.5, 1e-6, False)
    assert (seed.model.init, seed.pretrain.batch_size, seed.pretrain.lr, seed.pretrain.lr_scaling) == (
        "imagenet",
        128,
        0.2,
        "none",
    )
    assert seed.pretrain.epochs == 100 and seed.pretrain.warmup_epochs == 10 and seed.model.proj_final_bn
    assert (seed.eval.protocol, seed.eval.crops_epochs) == ("crops", 100)


def test_the_names_removed_before_any_release_are_unknown():
    """0.1.0's rename machinery is gone: an old name is an unknown key, with the allowed ones listed."""
    with pytest.raises(ConfigError, match=r"unknown key 'seed_epochs' in section 'eval' \(allowed: .*crops_epochs"):
        load_config("smoke", overrides=["eval.seed_epochs=7"])
    with pytest.raises(ConfigError, match="unknown preset 'seed'"):
        load_config("seed")
    assert "seed" not in preset_names()


def test_overrides_are_parsed_by_field_type():
    cfg = load_config(
        "smoke",
        overrides=[
            "pretrain.epochs=7",
            "pretrain.lr=0.5",
            "pretrain.compile=true",
            "augment.crop_scale=0.2,0.9",
            "model.arch=resnet34",
            "eval.l2_grid=[0.1, 1]",
        ],
    )
    assert cfg.pretrain.epochs == 7 and isinstance(cfg.pretrain.epochs, int)
    assert cfg.pretrain.lr == 0.5 and cfg.pretrain.compile is True
    assert cfg.augment.crop_scale == (0.2, 0.9)
    assert cfg.model.arch == "resnet34" and cfg.eval.l2_grid == (0.1, 1.0)


def test_config_is_frozen():
    cfg = load_config("smoke")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.pretrain.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "override, fragment",
    [
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
    ],
)
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
    assert lines["data.train_limit"] == (
        "  data.train_limit (int, default 0, >= 0): stratified subset size of train (0 = all)"
    )
    assert lines["model.arch"] == "  model.arch (str, default 'resnet18', one of resnet18, resnet34, resnet50)"
    assert "pretrain.knn_every" in lines and "held out of the labelled bank" in lines["pretrain.knn_every"]
    assert len(lines) == sum(len(dataclasses.fields(s.default_factory)) for s in dataclasses.fields(Config))


# -- one resolved config per run ------------------------------------------------


def test_resolve_merges_the_ui_parameters_into_the_struct_once():
    from kubeclr.config import UI_PARAMS, pipeline_parameters, resolve

    cfg = load_config("fast", overrides=["eval.knn_k=7"])
    ui, struct = pipeline_parameters(cfg)
    assert set(ui) == {p.name for p in UI_PARAMS}
    assert resolve(struct, ui) == cfg
    assert resolve(struct, {**ui, "epochs": 3}).pretrain.epochs == 3
    assert resolve(cfg.to_dict()) == cfg  # a whole config
    assert "metrics" not in struct  # set at compile time, in every task's environment


def test_the_metrics_section_comes_from_the_tasks_environment(monkeypatch):
    from kubeclr.config import compile_time_env, pipeline_parameters, resolve, task_view

    compiled = load_config("smoke", overrides=["metrics.pushgateway_url=http://pg:9091", "metrics.job=nightly"])
    ui, struct = pipeline_parameters(compiled)
    for name, value in compile_time_env(compiled).items():
        monkeypatch.setenv(name, value)
    assert resolve(struct, ui) == compiled
    assert task_view({"model": compiled.to_dict()["model"]}).metrics == compiled.metrics


def test_a_tasks_view_holds_its_keys_and_refuses_the_others():
    """A cached task's step reads its slice; a key it was not given is an error, never a silent default."""
    from kubeclr.config import config_digest, config_slice, restrict, task_view
    from kubeclr.config.schema import NotGivenError

    cfg = load_config("smoke", overrides=["storage.export_uri=s3://b/e", "storage.mirror_uri=s3://b/m"])
    given = config_slice(cfg, ("data", "storage.mirror_uri"))
    assert set(given) == {"data", "storage"} and given["storage"] == {"mirror_uri": "s3://b/m"}
    view = task_view(given)
    assert view.data == cfg.data and view.storage.mirror_uri == "s3://b/m" and view.is_view
    with pytest.raises(NotGivenError, match="'storage.export_uri' was not given to this task"):
        _ = view.storage.export_uri
    with pytest.raises(NotGivenError, match="'gate.min_runs'"):
        _ = view.gate.min_runs
    assert config_digest(view) == config_digest(restrict(cfg, ("data", "storage.mirror_uri")))
    assert view.override({"data.seed": 5}).data.seed == 5 and view.override({"data.seed": 5}).is_view
    assert not cfg.is_view and task_view(cfg.to_dict()) == cfg  # every key given: a whole config


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda s, u: ({**s, "pretrain": {**s["pretrain"], "epochs": 5}}, u),
            "pretrain.epochs is set twice: by the pipeline parameter 'epochs' and inside 'config'",
        ),
        (lambda s, u: ({k: v for k, v in s.items() if k != "eval"}, u), "key 'eval.protocol' is missing"),
        (
            lambda s, u: (s, {k: v for k, v in u.items() if k != "lr"}),
            "pipeline parameter 'lr' (pretrain.lr) is missing",
        ),
        (lambda s, u: (s, {**u, "epoch": 3}), "unknown pipeline parameter 'epoch'"),
        (lambda s, u: (s, {**u, "batch_size": 0}), "pretrain.batch_size=0 is out of range"),
        (lambda s, u: ({**s, "eval": None}, u), "config: section 'eval' must be a mapping, got NoneType"),
        (
            lambda s, u: ({**s, "metrics": {"port": 9100}}, u),
            "section 'metrics' is set when the pipeline is compiled (simclr-pipeline compile --set metrics.KEY=VALUE)",
        ),
    ],
)
def test_resolve_refuses_a_key_twice_or_nowhere_in_one_line(change, message):
    from kubeclr.config import pipeline_parameters, resolve

    ui, struct = pipeline_parameters(load_config("smoke"))
    struct, ui = change(struct, ui)
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        resolve(struct, ui)
    assert "\n" not in str(err.value)


def test_resolved_config_must_be_complete():
    from kubeclr.config import resolve

    raw = load_config("smoke").to_dict()
    del raw["pretrain"]["temperature"]
    with pytest.raises(ConfigError, match="key 'pretrain.temperature' is missing"):
        resolve(raw)


def test_config_digest_is_stable_and_sensitive():
    from kubeclr.config import config_digest

    a, b = load_config("smoke"), load_config("smoke")
    assert config_digest(a) == config_digest(b) and len(config_digest(a)) == 64
    assert config_digest(a.override({"eval.knn_k": 7})) != config_digest(a)
