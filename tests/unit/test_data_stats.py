"""Per-channel statistics against a numpy float64 oracle, streamed from the split file."""

from __future__ import annotations

import numpy as np
import pytest

from kubeclr.atomic import read_json
from kubeclr.config import Config
from kubeclr.data.files import Split, save_split
from kubeclr.data.stats import channel_mean_std, iter_npz_rows
from kubeclr.errors import DataError
from kubeclr.steps.compute_stats import run as compute_stats


def _images(n=37, seed=0):
    rng = np.random.default_rng(seed)
    # Skewed, channel-dependent values so a mixed-up axis or channel shows.
    base = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.int64)
    return np.clip(base * np.array([1.0, 0.5, 0.2])[None, :, None, None] + [[[[0]], [[100]], [[30]]]], 0, 255).astype(
        np.uint8
    )


def _oracle(images):
    x = images.astype(np.float64) / 255.0
    return x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))


@pytest.mark.parametrize("chunk", [1, 5, 37, 100])
def test_matches_numpy_float64(chunk):
    images = _images()
    mean, std, count = channel_mean_std(images[i : i + chunk] for i in range(0, len(images), chunk))
    ref_mean, ref_std = _oracle(images)
    assert count == len(images)
    np.testing.assert_allclose(mean, ref_mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, ref_std, rtol=0, atol=1e-12)


def test_constant_images_have_zero_std():
    images = np.full((4, 3, 8, 8), 51, np.uint8)
    mean, std, _ = channel_mean_std([images])
    assert mean == [0.2, 0.2, 0.2] and std == [0.0, 0.0, 0.0]


def test_rejects_empty_and_wrong_dtype():
    with pytest.raises(ValueError, match="no images"):
        channel_mean_std([])
    with pytest.raises(ValueError, match="uint8"):
        channel_mean_std([np.zeros((2, 3, 4, 4), np.float32)])


def test_iter_npz_rows_streams_the_array(tmp_path):
    images = _images(n=11)
    save_split(tmp_path / "s.npz", Split(images, np.zeros(11, np.int64), ("a",), {"synthetic": True}))
    chunks = list(iter_npz_rows(tmp_path / "s.npz", "images", rows=4))
    assert [len(c) for c in chunks] == [4, 4, 3]
    np.testing.assert_array_equal(np.concatenate(chunks), images)
    with pytest.raises(DataError, match="no array 'nope'"):
        list(iter_npz_rows(tmp_path / "s.npz", "nope"))


def test_compute_stats_step(tmp_path):
    images = _images(n=50, seed=1)
    save_split(
        tmp_path / "train.npz",
        Split(
            images, np.arange(50) % 10, tuple("abcdefghij"), {"source": "sample", "synthetic": True, "split": "train"}
        ),
    )
    result = compute_stats(Config(), tmp_path / "train.npz", tmp_path / "stats.json")
    on_disk = read_json(tmp_path / "stats.json")
    assert on_disk == result
    assert set(on_disk) == {"mean", "std", "count", "seconds", "synthetic"}
    ref_mean, ref_std = _oracle(images)
    np.testing.assert_allclose(on_disk["mean"], ref_mean, atol=1e-6)
    np.testing.assert_allclose(on_disk["std"], ref_std, atol=1e-6)
    assert on_disk["count"] == 50 and on_disk["synthetic"] is True


def test_compute_stats_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        compute_stats(Config(), tmp_path / "missing.npz", tmp_path / "stats.json")
    assert not (tmp_path / "stats.json").exists()


def test_streaming_memory_stays_at_one_chunk(tmp_path):
    import tracemalloc

    images = np.random.default_rng(2).integers(0, 256, size=(2000, 3, 32, 32), dtype=np.uint8)  # 6.1 MB
    save_split(tmp_path / "s.npz", Split(images, np.zeros(2000, np.int64), ("a",), {}))
    tracemalloc.start()
    try:
        mean, _, _ = channel_mean_std(iter_npz_rows(tmp_path / "s.npz", "images", rows=50))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(mean, _oracle(images)[0], atol=1e-12)
    assert peak < images.nbytes / 2  # loading the array (or a float64 copy) would exceed this


def _constant_channel_split(path, channel=1, value=128, n=20):
    images = _images(n=n, seed=3)
    images[:, channel] = value  # every pixel of every image: std exactly 0 there
    save_split(path, Split(images, np.arange(n) % 2, ("a", "b"), {"source": "test", "synthetic": False}))


def test_compute_stats_refuses_a_constant_channel_naming_it(tmp_path):
    _constant_channel_split(tmp_path / "train.npz")
    with pytest.raises(DataError) as err:
        compute_stats(Config(), tmp_path / "train.npz", tmp_path / "stats.json")
    assert str(err.value) == (
        "channel G (1) of the train split is constant (std 0: every pixel is 128); normalisation would divide "
        "by zero. Check the data (all-grey or single-colour images?)"
    )
    assert not (tmp_path / "stats.json").exists()  # the next step never reads a stats file it would divide by


def test_a_constant_channel_fails_the_step_in_one_line_left_for_the_local_runner(tmp_path, monkeypatch, capsys):
    """Through the step runtime, as the component calls it: exit 2, the cause logged once and left in the error file."""
    from kubeclr.steps import runtime

    _constant_channel_split(tmp_path / "train.npz", channel=2, value=0)
    monkeypatch.setenv(runtime.ERROR_FILE_ENV, str(tmp_path / "error.txt"))
    with pytest.raises(SystemExit) as exited:
        runtime.run_step(
            "compute_stats", compute_stats, Config().to_dict(), tmp_path / "train.npz", tmp_path / "s", run_name="t"
        )
    assert exited.value.code == 2
    line = (tmp_path / "error.txt").read_text()
    assert line == "compute_stats: channel B (2) of the train split is constant (std 0: every pixel is 0); " + (
        "normalisation would divide by zero. Check the data (all-grey or single-colour images?)\n"
    )
    logged = capsys.readouterr().err
    assert [x.split(" ERROR kubeclr.steps.runtime: ")[1] for x in logged.splitlines() if " ERROR " in x] == [
        line.strip()
    ]
    assert "Traceback" not in logged


def test_an_unexpected_error_in_a_step_leaves_its_type_and_first_line_and_keeps_the_traceback(tmp_path, monkeypatch):
    from kubeclr.steps import runtime

    def broken(cfg):
        raise RuntimeError("shapes (2, 3) and (4,) do not align\nsecond line")

    monkeypatch.setenv(runtime.ERROR_FILE_ENV, str(tmp_path / "error.txt"))
    with pytest.raises(RuntimeError, match="do not align"):  # not swallowed: a bug keeps its traceback
        runtime.run_step("pretrain", broken, Config().to_dict(), run_name="t")
    assert (tmp_path / "error.txt").read_text() == (
        "pretrain: RuntimeError: shapes (2, 3) and (4,) do not align "
        "(unexpected: the step's traceback is in its log above)\n"
    )
