"""The generated PyTorchJob against the training operator's documented v1 schema, field by field.

References: training-operator ``pkg/apis/kubeflow.org/v1`` (PyTorchJobSpec:
``pytorchReplicaSpecs`` keyed ``Master``/``Worker``, ``runPolicy``,
``nprocPerNode``; default container name ``pytorch``, port name
``pytorchjob-port``) and ``pkg/controller.v1/pytorch/envvar.go`` (the env the
operator injects, which our ``$(MASTER_ADDR):$(MASTER_PORT)`` refers to).
"""

from __future__ import annotations

import re

import kubernetes_validate
import pytest

from kubeclr.cluster.jobs import resource_path
from kubeclr.cluster.pods import JobPods
from kubeclr.cluster.pytorchjob import build_pytorchjob, job_name
from kubeclr.config import load_config
from kubeclr.errors import UserError
from kubeclr.launch.entry import build_parser, entry_args, read_config

GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
OPERATOR_ENV = {"MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK"}


def make(**kw):
    args = dict(
        name="simclr-nightly-abc123",
        namespace="ml",
        image="ghcr.io/kubeclr/kubeclr:0.1.0",
        nodes=3,
        gpus_per_node=4,
        command_args=["--output-uri", "s3://b/runs/x", "--run-name", "nightly"],
        env={"AWS_ENDPOINT_URL": "http://seaweedfs.kubeflow:8333"},
        secret_name="s3-credentials",
        node_selector={"nvidia.com/gpu.present": "true"},
        tolerations=[],
        cpu="8",
        memory="32Gi",
        shm_size="16Gi",
        service_account="pipeline-runner",
        labels={"team": "vision"},
    )
    args.update(kw)
    return build_pytorchjob(JobPods(**args))


def test_top_level_and_run_policy():
    job = make(active_deadline_s=3600)
    assert job["apiVersion"] == "kubeflow.org/v1"
    assert job["kind"] == "PyTorchJob"
    assert job["metadata"]["name"] == "simclr-nightly-abc123"
    assert job["metadata"]["namespace"] == "ml"
    assert job["metadata"]["labels"]["team"] == "vision"
    assert set(job["spec"]) == {"nprocPerNode", "runPolicy", "pytorchReplicaSpecs"}
    assert job["spec"]["nprocPerNode"] == "4"  # a string in the v1 API (it also accepts 'auto')
    assert job["spec"]["runPolicy"] == {"cleanPodPolicy": "Running", "backoffLimit": 2, "activeDeadlineSeconds": 3600}
    assert "activeDeadlineSeconds" not in make()["spec"]["runPolicy"]


def test_replica_specs_master_and_workers():
    specs = make(nodes=3)["spec"]["pytorchReplicaSpecs"]
    assert set(specs) == {"Master", "Worker"}
    assert specs["Master"]["replicas"] == 1
    assert specs["Worker"]["replicas"] == 2
    for spec in specs.values():
        assert spec["restartPolicy"] == "OnFailure"
    # one node: Master only (the operator rejects Worker replicas of 0 as meaningless)
    assert set(make(nodes=1)["spec"]["pytorchReplicaSpecs"]) == {"Master"}


@pytest.mark.parametrize("role", ["Master", "Worker"])
def test_container(role):
    tmpl = make()["spec"]["pytorchReplicaSpecs"][role]["template"]
    (c,) = tmpl["spec"]["containers"]
    assert c["name"] == "pytorch"
    assert c["image"] == "ghcr.io/kubeclr/kubeclr:0.1.0"
    assert c["command"] == [
        "torchrun",
        "--nnodes=3",
        "--nproc_per_node=4",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=$(MASTER_ADDR):$(MASTER_PORT)",
        "--rdzv_id=simclr-nightly-abc123",
        "-m",
        "kubeclr.launch.entry",
        "--output-uri",
        "s3://b/runs/x",
        "--run-name",
        "nightly",
    ]
    # every $(VAR) in the command is one the operator injects (Kubernetes leaves unknown ones verbatim)
    assert set(re.findall(r"\$\((\w+)\)", " ".join(c["command"]))) <= OPERATOR_ENV
    assert {"name": "pytorchjob-port", "containerPort": 23456, "protocol": "TCP"} in c["ports"]
    assert c["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "4"}
    assert c["resources"]["requests"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "4"}
    assert c["env"] == [{"name": "AWS_ENDPOINT_URL", "value": "http://seaweedfs.kubeflow:8333"}]
    assert c["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    assert c["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


@pytest.mark.parametrize("role", ["Master", "Worker"])
def test_pod_spec(role):
    tmpl = make()["spec"]["pytorchReplicaSpecs"][role]["template"]
    spec = tmpl["spec"]
    assert spec["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"] == [GPU_TAINT]
    assert spec["serviceAccountName"] == "pipeline-runner"
    assert "priorityClassName" not in spec  # only when asked: a missing PriorityClass would block the pods
    assert (
        make(priority_class="kubeclr-gpu-training")["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"][
            "priorityClassName"
        ]
        == "kubeclr-gpu-training"
    )
    assert spec["securityContext"]["runAsNonRoot"] is True
    labels = tmpl["metadata"]["labels"]
    assert labels["team"] == "vision" and labels["app.kubernetes.io/component"] == "simclr-pretrain"
    assert labels["kubeclr.io/job"] == "simclr-nightly-abc123"


def test_pod_template_is_a_valid_core_pod_template():
    """The pod template passes the Kubernetes OpenAPI schema (strict: no unknown fields)."""
    tmpl = make(metrics_port=9100)["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]
    doc = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": tmpl}
    kubernetes_validate.validate(doc, "1.30", strict=True)  # raises ValidationError on a bad field


def test_cpu_only_and_caller_tolerations():
    job = make(
        gpus_per_node=0,
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
        secret_name=None,
    )
    spec = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    c = spec["containers"][0]
    assert "nvidia.com/gpu" not in c["resources"]["limits"]
    assert "--nproc_per_node=1" in c["command"] and job["spec"]["nprocPerNode"] == "1"
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]
    assert "envFrom" not in c
    # a caller's own GPU toleration is kept, not duplicated
    own = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}
    assert make(tolerations=[own])["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["tolerations"] == [own]


def test_replicas_do_not_share_mutable_state():
    specs = make()["spec"]["pytorchReplicaSpecs"]
    specs["Worker"]["template"]["spec"]["containers"][0]["env"].append({"name": "X", "value": "1"})
    assert len(specs["Master"]["template"]["spec"]["containers"][0]["env"]) == 1


@pytest.mark.parametrize(
    "bad",
    [
        dict(name="Bad_Name"),
        dict(name="9starts-with-digit"),
        dict(name="x" * 41),
        dict(nodes=0),
        dict(gpus_per_node=-1),
    ],
)
def test_invalid_inputs_raise_one_line(bad):
    with pytest.raises(UserError) as err:
        make(**bad)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("run", ["Nightly Run #7", "run_2025-01-01T03:00:00Z", "---", "a" * 200, "ÜBER"])
def test_job_name_is_a_dns_label_and_stable(run):
    name = job_name(run)
    assert re.fullmatch(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", name), name
    assert job_name(run) == name
    assert job_name(run + "x") != name  # distinct runs get distinct jobs
    make(name=name)  # accepted by the builder


def test_resource_path():
    assert resource_path(make()) == "/apis/kubeflow.org/v1/namespaces/ml/pytorchjobs"


@pytest.mark.parametrize(
    "preset,overrides",
    [
        ("paper", ["pretrain.lr=1.5", "eval.l2_grid=[1e-06, 0.5]", "data.source=s3://b/c=1,2 x.tar.gz"]),
        ("smoke", ["augment.crop_scale=[0.2, 1.0]", "pretrain.compile=true", "storage.checkpoint_uri="]),
        ("fast", []),
    ],
)
def test_entry_args_rebuild_the_exact_config(preset, overrides):
    """What the pods parse (the entry point's own parser and reader) is the launcher's config, key for key."""
    cfg = load_config(preset, overrides=overrides)
    argv = entry_args(
        cfg,
        train="s3://b/runs/j/inputs/train.npz",
        stats="s3://b/runs/j/inputs/stats.json",
        run_name="r",
        output_uri="s3://b/runs/j",
    )
    args = build_parser().parse_args(argv)
    assert read_config(args) == cfg
    assert argv.count("--config-json") == 1 and not any(a == "--set" for a in argv)  # one argument, not ~60
    assert (args.train, args.stats) == ("s3://b/runs/j/inputs/train.npz", "s3://b/runs/j/inputs/stats.json")
    assert (args.output_uri, args.run_name) == ("s3://b/runs/j", "r")


def test_entry_refuses_a_config_that_changed_on_the_way():
    cfg = load_config("smoke")
    argv = entry_args(cfg, train="t.npz", stats="s.json", run_name="r", output_uri="s3://b/x")
    i = argv.index("--config-json") + 1
    argv[i] = argv[i].replace('"epochs":12', '"epochs":13')
    with pytest.raises(UserError, match="differs from --config-sha256"):
        read_config(build_parser().parse_args(argv))


@pytest.mark.parametrize("value", ["s3://b/$(HOME)/x", "s3://b/a$$b", "s3://b/$x$(", "s3://b/$$(HOME)"])
def test_dollars_in_values_reach_the_pod_unchanged(value):
    """Kubernetes expands ``$(VAR)`` and turns ``$$`` into ``$`` in commands; every ``$`` is doubled so the
    container receives the config exactly, digest intact."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fake_k8s_server import expand

    cfg = load_config("smoke", overrides=[f"data.source={value}"])
    args = entry_args(cfg, train="s3://b/t.npz", stats="s3://b/s.json", run_name="r$$1", output_uri="s3://b/o")
    cmd = make(command_args=args)["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0][
        "command"
    ]
    assert "--rdzv_endpoint=$(MASTER_ADDR):$(MASTER_PORT)" in cmd  # ours is still expanded
    env = {"HOME": "/home/x", "MASTER_ADDR": "m", "MASTER_PORT": "1"}
    received = [expand(a, env) for a in cmd[cmd.index("kubeclr.launch.entry") + 1 :]]
    parsed = build_parser().parse_args(received)
    assert read_config(parsed) == cfg and parsed.run_name == "r$$1"


def test_launch_settings_come_from_the_compiled_pipeline_env(tmp_path):
    """What `compile` puts on the pretrain task is what the launcher uses for the job's pods."""
    import yaml

    from kubeclr.config import load_config
    from kubeclr.launch.settings import ENV_VAR, LaunchSettings
    from kubeclr.pipelines.simclr import CompileOptions, compile_pipeline

    path = tmp_path / "p.yaml"
    compile_pipeline(
        load_config("smoke"),
        str(path),
        CompileOptions(
            launch=LaunchSettings(
                image="registry.local/kubeclr:1.2.3",
                node_selector={"nvidia.com/gpu.present": "true"},
                secret_name="s3-creds",
                cpu="16",
                memory="64Gi",
                shm_size="16Gi",
                timeout_s=3600,
                delete_after=False,
                priority_class="kubeclr-gpu-training",
            )
        ),
    )
    spec = next(yaml.safe_load_all(path.read_text()))
    env = {
        e["name"]: e.get("value", "")  # the IR omits empty values
        for e in spec["deploymentSpec"]["executors"]["exec-pretrain"]["container"]["env"]
    }
    # one variable of launch settings, not eleven; and the compile-time metrics section every task carries
    assert [k for k in env if k.startswith("KUBECLR_")] == [ENV_VAR, "KUBECLR_METRICS"]
    cluster = LaunchSettings.from_env({**env, "KUBECLR_SERVICE_ACCOUNT": "runner"})
    assert (cluster.image, cluster.secret_name, cluster.node_selector) == (
        "registry.local/kubeclr:1.2.3",
        "s3-creds",
        {"nvidia.com/gpu.present": "true"},
    )
    assert (cluster.cpu, cluster.memory, cluster.shm_size, cluster.timeout_s) == ("16", "64Gi", "16Gi", 3600)
    assert cluster.tolerations() == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert cluster.delete_after is False and cluster.service_account == "runner"
    assert cluster.priority_class == "kubeclr-gpu-training"


@pytest.mark.parametrize(
    "value, message",
    [
        ("{not json", "KUBECLR_LAUNCH: not valid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"cpu": 8}', "field 'cpu' must be a string, got 8"),
        ('{"timeout_s": "soon"}', "field 'timeout_s' must be an integer"),
        ('{"node_selector": {"a": 1}}', "field 'node_selector' must be an object of strings"),
        ('{"gpus": 2}', "unknown field 'gpus'"),
        ('{"timeout_s": 0}', "timeout_s and poll_s must be > 0"),
    ],
)
def test_launch_settings_from_env_name_the_bad_field(value, message):
    from kubeclr.launch.settings import LaunchSettings

    with pytest.raises(UserError, match=re.escape(message)):
        LaunchSettings.from_env({"KUBECLR_LAUNCH": value})


def test_launch_settings_defaults_are_the_pods_defaults():
    from kubeclr.launch.settings import LaunchSettings

    assert LaunchSettings.from_env({}) == LaunchSettings()
    assert (LaunchSettings().cpu, LaunchSettings().memory, LaunchSettings().shm_size) == ("8", "32Gi", "8Gi")


def test_multinode_pretrain_needs_object_storage(tmp_path):
    from kubeclr.config import load_config
    from kubeclr.errors import UserError
    from kubeclr.steps import pretrain as step

    cfg = load_config("smoke", overrides=[f"storage.checkpoint_uri={(tmp_path / 'ckpt').as_uri()}"])
    with pytest.raises(UserError, match=r"nodes=2 needs checkpoint_uri to be an s3:// prefix"):
        step.run(
            cfg,
            tmp_path / "train.npz",
            tmp_path / "stats.json",
            tmp_path / "enc.pt",
            tmp_path / "history.json",
            run_name="r",
            nodes=2,
        )
    assert list(tmp_path.iterdir()) == []
