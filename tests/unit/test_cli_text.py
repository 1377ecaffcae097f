"""What the CLI says: every command's description, the files `run` copies, `keys` with a preset, the logs."""

import argparse
import logging

from google.protobuf import json_format, struct_pb2

from kubeclr.cli import main
from kubeclr.cli.parser import RUN_FILES, SWEEP_RUN_FILES, build_parser
from kubeclr.config import load_config, pipeline_parameters, resolve


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_command_has_a_description_paragraph():
    commands = _commands()
    expected = {"run", "compile", "upload", "submit", "schedule", "bench", "render-job", "keys", "serve", "make-shards"}
    assert expected <= set(commands)
    for name, p in commands.items():
        assert p.description and len(p.description.split()) >= 12, name
        text = p.format_help()
        paragraph = text.split("\n\n")[1]  # usage, then the description, then the options
        assert paragraph.split()[:4] == p.description.split()[:4], name
        assert max(len(line) for line in paragraph.splitlines()) <= 100, name  # wrapped, not one long line
    for name in ("upload", "submit", "schedule"):
        assert "Contacts only the KFP API" in " ".join(commands[name].format_help().split()), name
    for name in ("upload", "submit", "schedule", "bench", "keys"):
        assert f"example:\n  simclr-pipeline {name} " in commands[name].format_help().replace(
            "example (nightly at 03:00):", "example:"
        ), name


def test_run_help_lists_every_file_a_local_run_copies():
    from kubeclr.cli.local_run import RESULT_FILES, SWEEP_FILES
    from kubeclr.serving import MODEL_FILES

    assert (*RESULT_FILES, *MODEL_FILES) == RUN_FILES  # what run_local copies without a sweep
    assert tuple(SWEEP_FILES) == SWEEP_RUN_FILES
    said = " ".join(_commands()["run"].format_help().split())
    for name in {*RUN_FILES, *SWEEP_RUN_FILES}:
        assert name in said, name


def _keys(capsys, *args) -> dict[str, str]:
    assert main(["keys", *args]) == 0
    out = capsys.readouterr().out.splitlines()
    return {line.split()[0]: line for line in out[1:]} | {"": out[0]}


def test_keys_shows_a_presets_values_next_to_the_defaults(capsys, tmp_path):
    plain = _keys(capsys)
    assert plain["pretrain.epochs"].startswith("  pretrain.epochs (int, default 100, >= 1)")
    smoke = _keys(capsys, "--preset", "smoke")
    assert "preset 'smoke'" in smoke[""]
    assert smoke["pretrain.epochs"].startswith("  pretrain.epochs = 12 (int, default 100, >= 1)")
    assert smoke["data.source"].startswith("  data.source = 'sample' (str, default 'https://")
    assert smoke.keys() == plain.keys()
    config = tmp_path / "mine.yaml"
    config.write_text("pretrain:\n  epochs: 7\n")
    mine = _keys(capsys, "--config", str(config))
    assert f"config {config}" in mine[""] and mine["pretrain.epochs"].startswith("  pretrain.epochs = 7 (int,")


def test_keys_with_an_unknown_preset_is_one_line(capsys):
    assert main(["keys", "--preset", "huge"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: unknown preset 'huge'") and len(err.splitlines()) == 1


def test_the_resolved_config_keeps_integers_that_kfp_hands_over_as_floats():
    """KFP passes the `config` struct through a protobuf Struct: every number arrives as a float."""
    cfg = load_config("smoke")
    ui, struct = pipeline_parameters(cfg)
    message = struct_pb2.Struct()
    message.update(struct)
    floated = json_format.MessageToDict(message)
    assert floated["model"]["width"] == 8.0 and type(floated["model"]["width"]) is float
    resolved = resolve(floated, {**ui, "epochs": float(ui["epochs"])})
    assert resolved == cfg
    assert type(resolved.to_dict()["pretrain"]["epochs"]) is int and type(resolved.model.width) is int


def test_pretraining_on_cpu_says_so(tmp_path, monkeypatch, caplog):
    from kubeclr.launch.inprocess import InProcess
    from kubeclr.steps import pretrain

    monkeypatch.setattr(InProcess, "train", lambda self, cfg, files, run_name: {})  # the log line only
    cfg = load_config("smoke", overrides=["pretrain.device=cpu"])
    with caplog.at_level(logging.INFO, logger="kubeclr.steps.pretrain"):
        pretrain.run(cfg, tmp_path / "train", tmp_path / "stats", tmp_path / "enc", tmp_path / "hist", run_name="t")
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("pretraining with")]
    assert line == "pretraining with the in-process engine on CPU (1 process)"


def test_a_reader_that_leaves_early_gets_no_traceback():
    """``simclr-pipeline keys | head``: the pipe closes before the listing is written; the CLI exits quietly."""
    import subprocess
    import sys

    cli = [sys.executable, "-c", "import sys; from kubeclr.cli import main; sys.exit(main())", "keys"]
    producer = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    producer.stdout.close()  # the reader is gone before the first write: that write fails with EPIPE
    _, err = producer.communicate(timeout=60)
    assert producer.returncode == 141, err.decode()
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()


def test_the_local_run_logs_a_config_output_with_integers_not_floats():
    from kfp.local import logging_utils

    from kubeclr.cli import kfp_local

    cfg = load_config("smoke").to_dict()
    floated = json_format.MessageToDict(json_format.ParseDict(cfg, struct_pb2.Struct()))  # as kfp.local hands it
    assert floated["pretrain"]["epochs"] == 12.0 and type(floated["pretrain"]["epochs"]) is float
    typed = kfp_local.typed_outputs({"Output": floated, "n": 3.0, "pretrain": {"pretrain": floated["pretrain"]}})
    assert typed["Output"] == cfg and typed["n"] == 3.0  # only a config (or a task's slice of one) is re-typed
    assert typed["pretrain"] == {"pretrain": cfg["pretrain"]}
    kfp_local.install_typed_output_log()
    lines = "\n".join(logging_utils.make_log_lines_for_outputs({"Output": floated}))
    assert "'epochs': 12," in lines and "'epochs': 12.0" not in lines and "'lr': 2.4" in lines
