"""Sweep specs (issue 18, first part): trials resolved like every config, bad specs refused in one line."""

from __future__ import annotations

import pytest

from kubeclr.config import load_config
from kubeclr.config.sweep import build_sweep, split_values
from kubeclr.errors import ConfigError

BASE = load_config("smoke")


def _spec(tmp_path, text: str):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def test_a_grid_crossed_with_listed_trials(tmp_path):
    path = _spec(
        tmp_path,
        "grid: {pretrain.lr: [0.5, 1.0, 1.5], pretrain.temperature: [0.1, 0.5]}\n"
        "trials: [{augment.blur: false}, {augment.blur: true, augment.color_strength: 1.0}]\n"
        "parallelism: 3\n",
    )
    sweep = build_sweep(BASE, path)
    assert len(sweep) == 12 and sweep.parallelism == 3 and sweep.metric == "linear_eval.val_top1"
    last = sweep.configs[-1]
    assert (last.pretrain.lr, last.pretrain.temperature, last.augment.blur, last.augment.color_strength) == (
        1.5,
        0.5,
        True,
        1.0,
    )
    assert sweep.overrides[0] == {"augment.blur": False, "pretrain.lr": 0.5, "pretrain.temperature": 0.1}
    assert all(c.model == BASE.model for c in sweep.configs)  # only the swept keys differ


def test_sweep_set_values_are_parsed_by_the_keys_type_and_seeds_are_noticed():
    sweep = build_sweep(BASE, None, ["pretrain.seed=0,1,2", "augment.crop_scale=[0.2,1.0],[0.5,1.0]"])
    assert len(sweep) == 6 and sweep.seeds
    assert sweep.configs[1].augment.crop_scale == (0.5, 1.0) and sweep.configs[5].pretrain.seed == 2
    assert split_values("0.1, [1,2] ,3") == ["0.1", "[1,2]", "3"]


@pytest.mark.parametrize(
    "text, sets, fragment",
    [
        ("grid: {pretrain.lrr: [1, 2]}\n", (), "unknown key 'lrr' in section 'pretrain'"),
        ("grid: {pretrain.lr: []}\n", (), "grid pretrain.lr must be a non-empty list"),
        (None, ("pretrain.lr=",), "--sweep-set pretrain.lr: no values"),
        ("grid: {pretrain.lr: [1]}\nmetric: linear_eval.test_top1\n", (), "choosing on test makes the test number"),
        ("grid: {pretrain.lr: [1]}\nmetric: knn.test_top1\n", (), "metric='knn.test_top1' is not allowed"),
        (
            "grid: {pretrain.lr: [1, 2, 3], pretrain.seed: [0, 1]}\nmax_trials: 4\n",
            (),
            "6 trials, more than max_trials=4",
        ),
        ("grid: {pretrain.epochs: [1, two]}\n", (), "trial 1: pretrain.epochs='two' is not an integer"),
        ("grid: {pretrain.epochs: [1, 2.5]}\n", (), "trial 1"),
        ("trials: []\n", (), "no trials"),
        ("grids: {pretrain.lr: [1]}\n", (), "unknown key 'grids' (allowed: grid, trials"),
        ("grid: [1, 2\n", (), "not valid YAML"),
        ("grid: {pretrain.lr: [1]}\nparallelism: 0\n", (), "parallelism=0 must be a whole number >= 1"),
        (
            "grid: {data.val_fraction: [0.1, 0.2]}\n",
            (),
            "data.val_fraction cannot vary between trials (the trials share",
        ),
        (None, ("storage.checkpoint_uri=a,b",), "storage.checkpoint_uri cannot vary between trials"),
        ("grid: {nosuch.key: [1, 2]}\n", (), "trial 0 nosuch.key: expected section.key with section one of data"),
        ("trials: [{pretrain.lr: 1.0}, {pretrain.lr: '1.0'}]\n", (), "trial 1 repeats trial 0"),
    ],
)
def test_bad_specs_are_one_line_naming_the_cause(tmp_path, text, sets, fragment):
    path = _spec(tmp_path, text) if text is not None else None
    with pytest.raises(ConfigError) as err:
        build_sweep(BASE, path, sets)
    message = str(err.value)
    assert fragment in message and "\n" not in message, message


def test_a_missing_spec_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"--sweep .*nope.yaml: No such file"):
        build_sweep(BASE, tmp_path / "nope.yaml")


def test_the_pipeline_items_carry_each_trials_index_and_overrides():
    sweep = build_sweep(BASE, None, ["pretrain.temperature=0.2,0.5"])
    assert sweep.items() == [
        {"index": 0, "overrides": {"pretrain.temperature": 0.2}},
        {"index": 1, "overrides": {"pretrain.temperature": 0.5}},
    ]
    assert sweep.spec() == {"metric": "linear_eval.val_top1", "seeds": False, "trials": sweep.items()}
