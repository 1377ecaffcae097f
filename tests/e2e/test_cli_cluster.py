"""`upload` / `submit` / `schedule` through the real CLI against a recording KFP API server."""

import json
import socket
from pathlib import Path

import pytest
import yaml
from kfp_fake_server import API, FakeKfpServer

from kubeclr.cli import main

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    path = tmp_path_factory.mktemp("pkg") / "simclr.yaml"
    assert main(["compile", "--preset", "smoke", "--output", str(path)]) == 0
    return str(path)


def test_upload_then_new_version(package, capsys):
    with FakeKfpServer(token="tok") as server:
        base = ["--host", server.url, "--token", "tok", "--package", package]
        assert main(["upload", *base, "--pipeline-name", "simclr"]) == 0
        assert main(["upload", *base, "--pipeline-name", "simclr", "--version", "v2"]) == 0
        uploads = server.find("POST", f"{API}/pipelines/upload")
        versions = server.find("POST", f"{API}/pipelines/upload_version")
        assert len(uploads) == 1 and len(versions) == 1
        sent = yaml.safe_load_all(next(iter(uploads[0].files.values())).decode())
        assert next(sent)["pipelineInfo"]["name"] == "simclr"
        assert versions[0].query["name"] == ["v2"]
        assert all(r.headers.get("authorization") == "Bearer tok" for r in server.requests)


def test_submit_sends_spec_and_typed_parameters(package, capsys):
    with FakeKfpServer() as server:
        rc = main(
            [
                "submit",
                "--host",
                server.url,
                "--package",
                package,
                "--experiment",
                "nightly",
                "--param",
                "epochs=3",
                "--param",
                "lr=0.5",
                "--param",
                "cifar_source=sample",
                "--run-name",
                "r1",
            ]
        )
        assert rc == 0
        run = server.find("POST", f"{API}/runs")[0].json
        assert run["display_name"] == "r1"
        assert run["service_account"] == "kubeclr-pipeline-runner"
        # cifar_source, the old name, is sent as data_source
        assert run["runtime_config"]["parameters"] == {"epochs": 3, "lr": 0.5, "data_source": "sample"}
        spec = run["pipeline_spec"].get("pipeline_spec", run["pipeline_spec"])  # with platform_spec when present
        assert spec["pipelineInfo"]["name"] == "simclr"
        assert server.find("POST", f"{API}/experiments")[0].json["display_name"] == "nightly"
        printed = json.loads(capsys.readouterr().out)
        assert printed["run_name"] == "r1"


def test_schedule_defaults_no_catchup_and_one_at_a_time(package):
    with FakeKfpServer() as server:
        rc = main(
            [
                "schedule",
                "--host",
                server.url,
                "--package",
                package,
                "--cron",
                "0 0 3 * * *",
                "--job-name",
                "nightly-canary",
                "--param",
                "epochs=1",
            ]
        )
        assert rc == 0
        job = server.find("POST", f"{API}/recurringruns")[0].json
        assert job["display_name"] == "nightly-canary"
        assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
        assert job["no_catchup"] is True and int(job["max_concurrency"]) == 1
        assert job["service_account"] == "kubeclr-pipeline-runner"
        rc = main(
            [
                "schedule",
                "--host",
                server.url,
                "--package",
                package,
                "--cron",
                "0 30 2 * * 1",
                "--catchup",
                "--max-concurrency",
                "2",
            ]
        )
        job = server.find("POST", f"{API}/recurringruns")[1].json
        assert rc == 0 and not job.get("no_catchup") and int(job["max_concurrency"]) == 2


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "make_args, fragment",
    [
        (
            lambda url, pkg: ["submit", "--host", url, "--package", pkg, "--param", "epoch=3"],
            "unknown pipeline parameter 'epoch' (did you mean 'epochs'?)",
        ),
        (lambda url, pkg: ["schedule", "--host", url, "--package", pkg, "--cron", "0 3 * * *"], "6 fields"),
        (lambda url, pkg: ["submit", "--host", f"http://127.0.0.1:{_closed_port()}", "--package", pkg], "127.0.0.1"),
        # checked before connecting: a dead host does not hide it
        (
            lambda url, pkg: [
                "schedule",
                "--host",
                f"http://127.0.0.1:{_closed_port()}",
                "--package",
                pkg,
                "--cron",
                "0 0 3 * * *",
                "--max-concurrency",
                "0",
            ],
            "max concurrency 0 must be within 1-10",
        ),
        (
            lambda url, pkg: [
                "schedule",
                "--host",
                f"http://127.0.0.1:{_closed_port()}",
                "--package",
                pkg,
                "--cron",
                "0 0 3 * * *",
                "--start-time",
                "2026-12-02T00:00:00Z",
                "--end-time",
                "2026-12-01T00:00:00Z",
            ],
            "must be after start time",
        ),
        # the world the run would train on does not divide the package's batch (smoke: 128)
        (
            lambda url, pkg: [
                "submit",
                "--host",
                url,
                "--package",
                pkg,
                "--param",
                "nodes=3",
                "--param",
                "gpus_per_node=7",
            ],
            "pretrain.batch_size 128 is not divisible by 3 nodes × 7 GPUs = 21 processes (--param); choose a batch "
            "size that is a multiple of 21, or another world size",
        ),
        (
            lambda url, pkg: [
                "submit",
                "--host",
                url,
                "--package",
                pkg,
                "--param",
                "batch_size=100",
                "--param",
                "nodes=8",
            ],
            "pretrain.batch_size 100 is not divisible by 8 nodes × 1 GPU = 8 processes (--param and the package's "
            "defaults)",
        ),
        (
            lambda url, pkg: ["submit", "--host", url, "--package", pkg, "--pipeline-root", "/local/path"],
            "--pipeline-root /local/path: not an object-store URI the cluster can write",
        ),
    ],
)
def test_user_errors_are_one_line(package, capsys, make_args, fragment):
    with FakeKfpServer() as server:
        rc = main(make_args(server.url, package))
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2
        assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
        assert not server.find("POST", f"{API}/runs") and not server.find("POST", f"{API}/recurringruns")


def test_a_key_set_twice_at_submit_time_fails_in_one_line_before_connecting(package, capsys):
    spec = next(yaml.safe_load_all(Path(package).read_text()))
    config = spec["root"]["inputDefinitions"]["parameters"]["config"]["defaultValue"]
    config["pretrain"]["epochs"] = 3  # also the `epochs` parameter
    with FakeKfpServer() as server:
        rc = main(["submit", "--host", server.url, "--package", package, "--param", f"config={json.dumps(config)}"])
        assert rc == 2 and server.requests == []
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: pretrain.epochs is set twice: by the pipeline parameter 'epochs' and inside '--param config'; "
        "set it only as the 'epochs' parameter"
    )


def test_a_partial_config_at_submit_time_names_the_missing_key(package, capsys):
    with FakeKfpServer() as server:
        rc = main(["submit", "--host", server.url, "--package", package, "--param", 'config={"eval": {"knn_k": 7}}'])
        assert rc == 2 and server.requests == []
    assert "--param config: key 'data.val_split' is missing" in capsys.readouterr().err
