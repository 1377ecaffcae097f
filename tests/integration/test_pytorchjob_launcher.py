"""The launcher's create / wait / fail / timeout / cleanup logic against a real local HTTP server.

The server (tests/fake_k8s_server.py) plays the Kubernetes API for
``pytorchjobs``; its ``on_create`` hook plays the job's rank 0 by writing
encoder/history into the file:// store the job was told to use.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ helpers
from fake_k8s_server import CREATED, RUNNING, SUCCEEDED, FakeK8s, FakeK8sServer, condition, trainjob_condition

from kubeclr.atomic import read_json, write_json
from kubeclr.cluster.jobs import JobFailed, JobTimeout, launch_and_wait
from kubeclr.cluster.k8s import K8sApi, K8sError
from kubeclr.cluster.pods import JobPods
from kubeclr.cluster.pytorchjob import build_pytorchjob
from kubeclr.config import load_config
from kubeclr.data.files import Split, save_split
from kubeclr.errors import StorageError, UserError
from kubeclr.launch.multinode import MultiNode
from kubeclr.launch.process import TrainFiles
from kubeclr.launch.settings import LaunchSettings
from kubeclr.storage.store import open_store

pytestmark = pytest.mark.integration

SUMMARY = {
    "arch": "resnet18",
    "epochs": 2,
    "batch_size": 16,
    "final_loss": 2.5,
    "seconds": 1.0,
    "images_per_second": 10.0,
    "device": "cuda",
}
ENCODER = {"conv1.weight": torch.arange(12, dtype=torch.float32).reshape(1, 3, 2, 2)}
FAILED = condition("Failed", "PyTorchJobFailed", "PyTorchJob ns/j is failed because 1 Master replica(s) failed.")


def arg(job: dict, flag: str) -> str:
    if job["kind"] == "TrainJob":
        cmd = job["spec"]["trainer"]["args"]
    else:
        cmd = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["command"]
    return cmd[cmd.index(flag) + 1]


def play_rank0(job: dict) -> None:
    """What the entry point's rank 0 writes under --output-uri when training ends."""
    store = open_store(arg(job, "--output-uri"))
    buf = io.BytesIO()
    torch.save(ENCODER, buf)
    store.write_bytes("encoder.pt", buf.getvalue())
    store.write_bytes("history.json", json.dumps({"epochs": [], "summary": SUMMARY, "config": {}}).encode())
    store.write_bytes("summary.json", json.dumps(SUMMARY).encode())


@pytest.fixture
def inputs(tmp_path):
    split = Split(
        images=np.zeros((4, 3, 32, 32), np.uint8),
        labels=np.arange(4, dtype=np.int64),
        class_names=["a", "b", "c", "d"],
        meta={"source": "sample", "synthetic": True, "split": "train", "seconds": 0.0, "md5": None},
    )
    save_split(tmp_path / "train.npz", split)
    write_json(
        tmp_path / "stats.json", {"mean": [0.5] * 3, "std": [0.25] * 3, "count": 4, "seconds": 0.0, "synthetic": True}
    )
    return tmp_path / "train.npz", tmp_path / "stats.json"


def tiny_job(name="simclr-test-job"):
    pods = JobPods(
        name=name,
        namespace="ml",
        image="img:1",
        nodes=2,
        gpus_per_node=1,
        command_args=[],
        cpu="1",
        memory="1Gi",
        shm_size="1Gi",
    )
    return build_pytorchjob(pods)


def run(tmp_path, inputs, state, nodes=2, gpus_per_node=1, engine="pytorchjob", **settings):
    cfg = load_config(
        "smoke", overrides=[f"storage.checkpoint_uri={(tmp_path / 'bucket').as_uri()}", f"cluster.engine={engine}"]
    )
    settings = LaunchSettings(
        **{"image": "img:1", "namespace": "ml", "poll_s": 0.01, "timeout_s": 30, "secret_name": "", **settings}
    )
    files = TrainFiles(
        *inputs,
        tmp_path / "out" / "encoder.pt",
        tmp_path / "out" / "history.json",
        checkpoints=cfg.storage.checkpoint_uri,
    )
    with FakeK8sServer(state) as srv:
        engine = MultiNode(nodes, gpus_per_node, settings, api=K8sApi(srv.url, token="t0ken"))
        return engine.train(cfg, files, run_name="Nightly 7")


def test_success_yields_artifacts_and_cleans_up(tmp_path, inputs, caplog):
    state = FakeK8s(
        script=[[CREATED], [CREATED, RUNNING], [CREATED, RUNNING, SUCCEEDED]], on_create=play_rank0, token="t0ken"
    )
    with caplog.at_level(logging.INFO, logger="kubeclr.launch.multinode"):
        summary = run(tmp_path, inputs, state, nodes=3, gpus_per_node=2, secret_name="s3-creds")
    assert summary == SUMMARY
    enc = torch.load(tmp_path / "out" / "encoder.pt", weights_only=True)
    assert torch.equal(enc["conv1.weight"], ENCODER["conv1.weight"])
    assert read_json(tmp_path / "out" / "history.json")["summary"] == SUMMARY

    (post,) = state.of("POST")
    assert post.path == "/apis/kubeflow.org/v1/namespaces/ml/pytorchjobs"
    assert post.headers["Authorization"] == "Bearer t0ken"
    job = post.body
    assert job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 2
    # the job reads its inputs from the store the launcher uploaded them to
    prefix = arg(job, "--output-uri")
    store = open_store(prefix)
    assert store.exists("inputs/train.npz") and store.exists("inputs/stats.json")
    config = json.loads(arg(job, "--config-json"))  # the whole resolved config, one argument, unchanged
    assert config["storage"]["checkpoint_uri"] == (tmp_path / "bucket").as_uri()
    assert arg(job, "--checkpoint-uri") == f"{(tmp_path / 'bucket').as_uri()}/checkpoints"
    assert prefix.startswith(f"{(tmp_path / 'bucket').as_uri()}/multinode/simclr-")
    assert arg(job, "--train") == f"{prefix}/inputs/train.npz"
    assert arg(job, "--stats") == f"{prefix}/inputs/stats.json"

    (delete,) = state.of("DELETE")
    assert delete.path == f"/apis/kubeflow.org/v1/namespaces/ml/pytorchjobs/{job['metadata']['name']}"
    assert delete.body["propagationPolicy"] == "Foreground"
    lines = [re.fullmatch(r"PyTorchJob ml/simclr-\S+: (\w+) \(.*\)", r.getMessage()) for r in caplog.records]
    transitions = [m[1] for m in lines if m]
    assert transitions == ["Created", "Running", "Succeeded"]  # each logged once, in order


def test_failure_raises_with_the_jobs_reason(tmp_path, inputs):
    state = FakeK8s(script=[[CREATED, RUNNING], [CREATED, FAILED]], on_create=play_rank0)
    with pytest.raises(JobFailed) as err:
        run(tmp_path, inputs, state)
    msg = str(err.value)
    assert "PyTorchJobFailed" in msg and "1 Master replica(s) failed" in msg and "\n" not in msg
    assert isinstance(err.value, UserError)  # the CLI turns it into one line and a non-zero exit
    assert len(state.of("DELETE")) == 1
    assert not (tmp_path / "out" / "encoder.pt").exists()  # no output that looks complete


def test_failure_keeps_the_job_when_asked(tmp_path, inputs):
    state = FakeK8s(script=[[CREATED, FAILED]])
    with pytest.raises(JobFailed):
        run(tmp_path, inputs, state, delete_after=False)
    assert state.of("DELETE") == [] and len(state.jobs) == 1


def test_timeout_deletes_the_job():
    state = FakeK8s(script=[[CREATED, RUNNING]])  # Running forever
    with FakeK8sServer(state) as srv, pytest.raises(JobTimeout) as err:
        launch_and_wait(tiny_job(), api=K8sApi(srv.url), timeout_s=0.2, poll_s=0.02, delete_after=False)
    assert "did not finish within" in str(err.value) and "last state: Created, Running" in str(err.value)
    (delete,) = state.of("DELETE")  # deleted even though delete_after=False: no GPU pods left behind
    assert delete.body["propagationPolicy"] == "Foreground"
    assert state.jobs == {}
    assert len(state.of("GET")) >= 2  # it did poll


def test_existing_job_from_an_earlier_attempt_is_replaced():
    state = FakeK8s(script=[[CREATED, RUNNING, SUCCEEDED]])
    old = tiny_job()
    state.jobs["ml/simclr-test-job"] = old
    with FakeK8sServer(state) as srv:
        launch_and_wait(tiny_job(), api=K8sApi(srv.url), timeout_s=5, poll_s=0.01)
    methods = [r.method for r in state.requests]
    assert methods[:3] == ["POST", "DELETE", "GET"]  # 409 → delete → until 404
    assert methods.count("POST") == 2


def test_api_blips_while_waiting_are_retried(caplog):
    state = FakeK8s(script=[[CREATED, RUNNING], [CREATED, RUNNING, SUCCEEDED]], flaky_gets=2)
    with FakeK8sServer(state) as srv:
        launch_and_wait(tiny_job(), api=K8sApi(srv.url), timeout_s=5, poll_s=0.01)
    assert len(state.of("GET")) == 4 and len(state.of("DELETE")) == 1
    assert sum("will retry" in r.getMessage() and "HTTP 503" in r.getMessage() for r in caplog.records) == 2


def test_job_deleted_by_someone_else_fails_clearly():
    state = FakeK8s(script=[[CREATED, RUNNING]])
    with FakeK8sServer(state) as srv:
        api = K8sApi(srv.url)

        class Vanishing(K8sApi):  # another actor deletes the job right after it is created
            def request(self, method, path, body=None):
                out = api.request(method, path, body)
                if method == "POST":
                    state.jobs.clear()
                return out

        with pytest.raises(JobFailed, match="disappeared while running"):
            launch_and_wait(tiny_job(), api=Vanishing(srv.url), timeout_s=5, poll_s=0.01)


def test_success_without_outputs_is_a_clear_storage_error(tmp_path, inputs):
    state = FakeK8s(script=[[CREATED, SUCCEEDED]])  # the job 'succeeds' but writes nothing
    with pytest.raises(StorageError) as err:
        run(tmp_path, inputs, state)
    assert "rank 0's outputs are missing" in str(err.value) and "encoder.pt" in str(err.value)


def test_forbidden_names_rbac():
    with FakeK8sServer(FakeK8s(refuse=403)) as srv, pytest.raises(K8sError) as err:
        launch_and_wait(tiny_job(), api=K8sApi(srv.url), timeout_s=1, poll_s=0.01)
    assert "HTTP 403" in str(err.value) and "RBAC" in str(err.value) and "\n" not in str(err.value)


def test_unreachable_api_server_is_one_clear_line():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(K8sError) as err:
        launch_and_wait(tiny_job(), api=K8sApi(f"http://127.0.0.1:{port}", timeout_s=2), timeout_s=1)
    msg = str(err.value)
    assert "cannot reach the Kubernetes API server" in msg and f"127.0.0.1:{port}" in msg and "\n" not in msg


def test_in_cluster_outside_a_cluster(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(K8sError, match="not running inside Kubernetes"):
        K8sApi.in_cluster(tmp_path)


def test_in_cluster_config_over_tls(monkeypatch, tmp_path):
    """The pod's real path: https to KUBERNETES_SERVICE_HOST, CA from ca.crt, token from the mounted file."""
    sa = tmp_path / "sa"
    sa.mkdir()
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=k8s",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(tmp_path / "key.pem"),
            "-out",
            str(sa / "ca.crt"),
        ],
        check=True,
        capture_output=True,
    )
    (sa / "token").write_text("sa-token\n")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sa / "ca.crt", tmp_path / "key.pem")
    state = FakeK8s(script=[[CREATED, RUNNING, SUCCEEDED]], token="sa-token")
    with FakeK8sServer(state, tls=tls) as srv:
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(srv.port))
        api = K8sApi.in_cluster(sa)
        assert api.base_url == srv.url and srv.url.startswith("https://")
        launch_and_wait(tiny_job(), api=api, timeout_s=5, poll_s=0.01)
        assert [r.method for r in state.requests] == ["POST", "GET", "DELETE"]
        # a server whose certificate the pod's CA does not sign is refused
        other = tmp_path / "other"
        other.mkdir()
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=x",
                "-keyout",
                str(other / "k.pem"),
                "-out",
                str(other / "ca.crt"),
            ],
            check=True,
            capture_output=True,
        )
        (other / "token").write_text("sa-token")
        with pytest.raises(K8sError, match="cannot reach|CERTIFICATE_VERIFY_FAILED|certificate"):
            K8sApi.in_cluster(other).request("GET", "/apis/kubeflow.org/v1/namespaces/ml/pytorchjobs/x")


def test_sigterm_while_waiting_deletes_the_job():
    """A cancelled KFP run SIGTERMs the launcher pod: the job must not outlive it."""
    import os
    import signal
    import threading

    state = FakeK8s(script=[[CREATED, RUNNING]])  # Running forever
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    with FakeK8sServer(state) as srv, pytest.raises(SystemExit) as exit_info:
        timer.start()
        launch_and_wait(tiny_job(), api=K8sApi(srv.url), timeout_s=60, poll_s=0.02, delete_after=False)
    assert exit_info.value.code == 128 + signal.SIGTERM
    assert len(state.of("DELETE")) == 1 and state.jobs == {}
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler was restored


# -- the TrainJob path (Kubeflow Trainer v2.3) ------------------------------------

COMPLETE = trainjob_condition("Complete", "AllJobsCompleted", "jobset completed")


def nodes_status(active=0, ready=0, succeeded=0, conditions=()):
    return {
        "conditions": list(conditions),
        "jobsStatus": [
            {"name": "node", "active": active, "ready": ready, "succeeded": succeeded, "failed": 0, "suspended": 0}
        ],
    }


def test_trainjob_success_follows_jobs_status_and_cleans_up(tmp_path, inputs, caplog):
    state = FakeK8s(
        script=[nodes_status(), nodes_status(2), nodes_status(2, 2), nodes_status(0, 0, 2, [COMPLETE])],
        on_create=play_rank0,
    )
    with caplog.at_level(logging.INFO, logger="kubeclr.launch.multinode"):
        summary = run(tmp_path, inputs, state, nodes=2, gpus_per_node=4, engine="trainjob", secret_name="s3-creds")
    assert summary == SUMMARY
    (post,) = state.of("POST")
    assert post.path == "/apis/trainer.kubeflow.org/v1alpha1/namespaces/ml/trainjobs"
    job = post.body
    assert job["kind"] == "TrainJob" and job["spec"]["trainer"]["numNodes"] == 2
    prefix = arg(job, "--output-uri")
    assert open_store(prefix).exists("inputs/train.npz")
    assert arg(job, "--checkpoint-uri") == f"{(tmp_path / 'bucket').as_uri()}/checkpoints"
    (delete,) = state.of("DELETE")
    assert delete.path.endswith(f"/trainjobs/{job['metadata']['name']}")
    said = [r.getMessage() for r in caplog.records]
    # no Running condition in Trainer v2: progress comes from status.jobsStatus, each change once
    progress = [m.split(": ", 1)[1] for m in said if re.match(r"TrainJob ml/simclr-\S+: node:", m)]
    assert progress == ["node: pending", "node: 2 active", "node: 2 active, 2 ready", "node: 2 succeeded"]
    assert any(
        re.fullmatch(r"TrainJob ml/simclr-\S+: Complete \(AllJobsCompleted: jobset completed\)", m) for m in said
    )


def test_trainjob_failure_carries_the_jobs_reason(tmp_path, inputs):
    failed = trainjob_condition("Failed", "DeadlineExceeded", "TrainJob exceeded its activeDeadlineSeconds")
    state = FakeK8s(script=[nodes_status(2), nodes_status(0, conditions=[failed])])
    with pytest.raises(JobFailed) as err:
        run(tmp_path, inputs, state, engine="trainjob")
    assert "TrainJob ml/" in str(err.value) and "DeadlineExceeded: TrainJob exceeded" in str(err.value)
    assert len(state.of("DELETE")) == 1 and not (tmp_path / "out" / "encoder.pt").exists()


def test_trainjob_timeout_deletes_the_job(tmp_path, inputs):
    state = FakeK8s(script=[nodes_status(2)])  # active forever
    with pytest.raises(JobTimeout, match="did not finish within"):
        run(tmp_path, inputs, state, engine="trainjob", timeout_s=0.3, delete_after=False)
    assert len(state.of("DELETE")) == 1 and state.jobs == {}


def test_trainjob_without_trainer_installed_says_so(tmp_path, inputs):
    state = FakeK8s(plurals=("pytorchjobs",))  # only the Training Operator v1 is installed
    with pytest.raises(K8sError) as err:
        run(tmp_path, inputs, state, engine="trainjob")
    msg = str(err.value)
    assert "HTTP 404" in msg and "is Kubeflow Trainer v2.3+ installed?" in msg and "\n" not in msg
    assert "kubectl get clustertrainingruntime torch-distributed" in msg
    state = FakeK8s(plurals=("trainjobs",))
    with pytest.raises(K8sError, match="is the Kubeflow Training Operator installed"):
        run(tmp_path, inputs, state, engine="pytorchjob")


def test_trainjob_forbidden_names_rbac(tmp_path, inputs):
    with pytest.raises(K8sError) as err:
        run(tmp_path, inputs, FakeK8s(refuse=403), engine="trainjob")
    assert "HTTP 403" in str(err.value) and "RBAC" in str(err.value)


def test_trainjob_queued_by_kueue_logs_each_suspension_and_resume(tmp_path, inputs, caplog):
    """Kueue suspends a TrainJob until it admits it, and may preempt (suspend) it again later."""
    suspended = trainjob_condition("Suspended", "Suspended", "TrainJob is suspended")
    resumed = {**trainjob_condition("Suspended", "Resumed", "TrainJob is resumed"), "status": "False"}
    state = FakeK8s(
        script=[
            nodes_status(conditions=[suspended]),
            nodes_status(2, 2, conditions=[resumed]),
            nodes_status(conditions=[suspended]),
            nodes_status(2, 2, conditions=[resumed]),
            nodes_status(0, 0, 2, [resumed, COMPLETE]),
        ],
        on_create=play_rank0,
    )
    with caplog.at_level(logging.INFO, logger="kubeclr.launch.multinode"):
        assert run(tmp_path, inputs, state, engine="trainjob") == SUMMARY
    said = [r.getMessage().split(": ", 1)[1] for r in caplog.records if ": Suspended" in r.getMessage()]
    assert (
        said == ["Suspended (Suspended: TrainJob is suspended)", "Suspended=False (Resumed: TrainJob is resumed)"] * 2
    )
