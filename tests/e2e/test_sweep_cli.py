"""A sweep as a user runs it: one kfp.local run, the data steps once, three trials, a leaderboard chosen on val."""

import json
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "kubeclr.cli"]
TINY = [
    "--preset", "smoke",
    "--set", "pretrain.epochs=2",
    "--set", "pretrain.knn_every=0",
    "--set", "data.train_limit=300",
    "--set", "data.val_limit=100",
    "--set", "data.test_limit=100",
]  # fmt: skip


def run(*args, timeout=900):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    out, workdir, ckpt = tmp / "out", tmp / "kfp", tmp / "ckpt"
    spec = tmp / "sweep.yaml"
    spec.write_text("grid:\n  pretrain.temperature: [0.1, 0.2, 0.5]\nparallelism: 3\n")
    proc = run(
        "run", "--local", *TINY, "--sweep", str(spec), "--output-dir", str(out), "--workdir", str(workdir),
        "--checkpoint-uri", ckpt.as_uri(), "--run-name", "sw",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = [p for p in workdir.iterdir() if p.is_dir()]
    return proc, out, run_dir, ckpt


def test_the_data_steps_ran_once_and_each_trial_once(sweep):
    _, _, run_dir, _ = sweep
    tasks = sorted(p.name for p in run_dir.iterdir())
    assert [t for t in tasks if not t.startswith("for-loop")] == [
        "compute-stats",
        "download-split",
        "leaderboard",
        "resolve-config",
    ]
    trials = [p for p in run_dir.iterdir() if p.name.startswith("for-loop")]
    assert sorted(p.name.rsplit("-", 1)[1] for p in trials) == ["0", "1", "2"]
    for trial in trials:
        assert sorted(p.name for p in trial.iterdir()) == [
            "extract-features",
            "linear-eval",
            "pretrain",
            "trial-config",
        ]
    # one data step, so every trial trained and evaluated on its splits and statistics
    histories = [json.loads((t / "pretrain" / "history").read_text()) for t in trials]
    assert all(h["config"]["data"] == histories[0]["config"]["data"] for h in histories)
    assert len({h["config"]["pretrain"]["temperature"] for h in histories}) == 3


def test_the_leaderboard_ranks_the_trials_on_val_and_hands_over_the_winners_encoder(sweep):
    proc, out, run_dir, _ = sweep
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["metric"] == "linear_eval.val_top1" and len(board["trials"]) == 3
    assert [t["overrides"] for t in board["trials"]] == [{"pretrain.temperature": v} for v in (0.1, 0.2, 0.5)]
    vals = [t["val_top1"] for t in board["trials"]]
    assert board["ranking"] == sorted(range(3), key=lambda i: (-vals[i], i)) and board["winner"] == board["ranking"][0]
    for t in board["trials"]:
        assert {"config_sha256", "val_top1", "test_top1", "knn_test_top1", "seconds"} <= set(t) and t["seconds"] > 0
    assert len({t["config_sha256"] for t in board["trials"]}) == 3
    winner = board["winner"]
    (trained,) = run_dir.glob(f"for-loop-*-iteration-{winner}/pretrain/encoder")
    assert (out / "encoder.pt").read_bytes() == trained.read_bytes()
    history = json.loads((trained.parent / "history").read_text())
    # the winner's history is that trial's: its override, its encoder
    assert history["config"]["pretrain"]["temperature"] == board["trials"][winner]["overrides"]["pretrain.temperature"]
    assert history["encoder_sha256"] == board["trials"][winner]["encoder_sha256"]
    assert {p.name for p in out.iterdir()} >= {"leaderboard.json", "leaderboard.html", "leaderboard.md", "encoder.pt"}
    assert f"winner trial {winner} (pretrain.temperature=" in proc.stdout
    assert "open the leaderboard: file://" in proc.stdout


def test_each_trial_checkpoints_in_its_own_folder(sweep):
    _, out, _, ckpt = sweep
    board = json.loads((out / "leaderboard.json").read_text())
    expected = {f"trial-{t['index']:02d}-{t['config_sha256'][:12]}" for t in board["trials"]}
    assert {p.name for p in ckpt.iterdir()} == expected
    for folder in ckpt.iterdir():
        assert (folder / "ckpt-000002" / "MANIFEST.json").is_file()


@pytest.mark.parametrize(
    "spec, sets, fragment",
    [
        ("grid: {pretrain.lrr: [1, 2]}\n", (), "unknown key 'lrr' in section 'pretrain'"),
        ("grid: {pretrain.lr: []}\n", (), "grid pretrain.lr must be a non-empty list"),
        (None, ("pretrain.lr=",), "--sweep-set pretrain.lr: no values"),
        ("grid: {pretrain.lr: [1.0]}\nmetric: linear_eval.test_top1\n", (), "choosing on test"),
        ("grid: {pretrain.lr: [0.5, 1.0, 1.5], pretrain.seed: [0, 1, 2]}\nmax_trials: 8\n", (), "9 trials, more than"),
        ("grid: {pretrain.epochs: [2, many]}\n", (), "pretrain.epochs='many' is not an integer"),
        ("grid: {data.train_limit: [100, 200]}\n", (), "data.train_limit cannot vary between trials"),
    ],
)
def test_bad_sweeps_are_one_line_before_anything_runs(tmp_path, spec, sets, fragment):
    args = []
    if spec is not None:
        (tmp_path / "s.yaml").write_text(spec)
        args += ["--sweep", str(tmp_path / "s.yaml")]
    for item in sets:
        args += ["--sweep-set", item]
    proc = run("run", "--local", *TINY, *args, "--output-dir", str(tmp_path / "out"), timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], (
        proc.stderr
    )
    assert not (tmp_path / "out").exists()  # refused before kfp.local started
