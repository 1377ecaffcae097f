"""The generated TrainJob against Kubeflow Trainer v2.3's API, field by field.

The checks are ours, written from the v2.3.0 types (kubeflow/trainer
``pkg/apis/trainer/v1alpha1/trainjob_types.go``, ``trainingruntime_types.go``,
the CRD ``manifests/base/crds/trainer.kubeflow.org_trainjobs.yaml`` and the
``torch-distributed`` runtime): which fields exist, their types, the CEL rules
and webhook checks a client must respect. No upstream file is copied here.
"""

from __future__ import annotations

import re

import kubernetes_validate
import pytest

from kubeclr.cluster.pods import JobPods
from kubeclr.cluster.trainjob import NODE, TORCH_ENV, build_trainjob
from kubeclr.errors import UserError

# trainjob_types.go / trainingruntime_types.go, v2.3.0
SPEC_FIELDS = {
    "runtimeRef",
    "initializer",
    "trainer",
    "labels",
    "annotations",
    "runtimePatches",
    "suspend",
    "managedBy",
    "activeDeadlineSeconds",
}
TRAINER_FIELDS = {"image", "command", "args", "env", "numNodes", "resourcesPerNode", "numProcPerNode"}
POD_PATCH_FIELDS = {
    "serviceAccountName",
    "volumes",
    "initContainers",
    "containers",
    "imagePullSecrets",
    "securityContext",
    "nodeSelector",
    "affinity",
    "tolerations",
    "schedulingGates",
    "terminationGracePeriodSeconds",
}
CONTAINER_PATCH_FIELDS = {"name", "env", "volumeMounts", "securityContext"}
NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # the CRD's CEL rule, with size <= 63
MANAGER = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9._/-]+$")  # domain-prefixed path


def make(**kw):
    args = dict(
        name="simclr-nightly-abc123",
        namespace="ml",
        image="ghcr.io/kubeclr/kubeclr:0.1.0",
        nodes=2,
        gpus_per_node=8,
        command_args=["--output-uri", "s3://b/runs/x", "--data", "s3://b/$(HOME)"],
        env={"NCCL_DEBUG": "WARN"},
        secret_name="s3-credentials",
        node_selector={"nvidia.com/gpu.present": "true"},
        cpu="16",
        memory="64Gi",
        shm_size="16Gi",
        service_account="pipeline-runner",
        labels={"team": "vision"},
        active_deadline_s=3600,
    )
    args.update(kw)
    return build_trainjob(JobPods(**args))


def pod_patch(job):
    (patch,) = job["spec"]["runtimePatches"]
    (replicated,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert replicated["name"] == NODE  # the torch-distributed runtime's only replicated job
    return patch, replicated["template"]["spec"]["template"]


def check_against_the_v2_3_api(job):
    """What the API server and Trainer's webhook would accept (the checks a client can make offline)."""
    assert (job["apiVersion"], job["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert NAME.match(job["metadata"]["name"]) and len(job["metadata"]["name"]) <= 63
    spec = job["spec"]
    assert set(spec) <= SPEC_FIELDS
    ref = spec["runtimeRef"]
    assert ref["name"] and ref["apiGroup"] == "trainer.kubeflow.org"
    assert ref["kind"] in ("ClusterTrainingRuntime", "TrainingRuntime")
    trainer = spec["trainer"]
    assert set(trainer) <= TRAINER_FIELDS
    assert isinstance(trainer["numNodes"], int) and trainer["numNodes"] >= 1
    assert isinstance(trainer["numProcPerNode"], int)  # *int32 in v2.3, not IntOrString
    assert all(isinstance(a, str) for a in trainer["command"] + trainer["args"])
    assert len(trainer["command"]) <= 128 and len(trainer["args"]) <= 128
    assert not {e["name"] for e in trainer["env"]} & set(TORCH_ENV)  # the webhook rejects these
    if "activeDeadlineSeconds" in spec:
        assert isinstance(spec["activeDeadlineSeconds"], int) and spec["activeDeadlineSeconds"] >= 1
    assert len(spec["runtimePatches"]) <= 16
    patch, pod = pod_patch(job)
    assert MANAGER.match(patch["manager"]) and set(patch) <= {"manager", "time", "trainingRuntimeSpec"}
    assert set(pod) <= {"metadata", "spec"} and set(pod["metadata"]) <= {"labels", "annotations"}
    assert set(pod["spec"]) <= POD_PATCH_FIELDS  # anything else (priorityClassName, …) would be pruned
    for container in pod["spec"]["containers"]:
        assert set(container) <= CONTAINER_PATCH_FIELDS
        assert container["name"] == NODE and "env" not in container  # env of `node` belongs in trainer.env
    # the pieces are well-formed core/v1: validate them as the pod the runtime will build
    full_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", **pod["metadata"]},
        "spec": {
            **pod["spec"],
            "containers": [
                {
                    **c,
                    "image": trainer["image"],
                    "command": trainer["command"],
                    "args": trainer["args"],
                    "env": trainer["env"],
                    "resources": trainer["resourcesPerNode"],
                }
                for c in pod["spec"]["containers"]
            ],
        },
    }
    kubernetes_validate.validate(full_pod, "1.30", strict=True)


def test_the_job_fits_the_v2_3_api():
    check_against_the_v2_3_api(make())
    check_against_the_v2_3_api(
        make(
            gpus_per_node=0,
            secret_name=None,
            node_selector={},
            service_account=None,
            active_deadline_s=None,
            queue_name="gpu",
        )
    )


def test_runtime_reference_and_trainer():
    job = make()
    assert job["spec"]["runtimeRef"] == {
        "name": "torch-distributed",
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
    }
    pods = JobPods(name="j", namespace="ml", image="i:1", nodes=2, gpus_per_node=1, command_args=[])
    other = build_trainjob(pods, runtime_name="my-torch", runtime_kind="TrainingRuntime")
    assert (
        other["spec"]["runtimeRef"]["name"] == "my-torch" and other["spec"]["runtimeRef"]["kind"] == "TrainingRuntime"
    )
    t = job["spec"]["trainer"]
    # torchrun reads PET_NNODES / PET_NPROC_PER_NODE / PET_NODE_RANK / PET_MASTER_* from the torch plugin
    assert t["command"] == ["torchrun"]
    assert t["args"] == [
        "-m",
        "kubeclr.launch.entry",
        "--output-uri",
        "s3://b/runs/x",
        "--data",
        "s3://b/$$(HOME)",
    ]  # each $ doubled
    assert (t["numNodes"], t["numProcPerNode"]) == (2, 8)
    assert t["resourcesPerNode"] == {
        "requests": {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "8"},
        "limits": {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "8"},
    }
    assert job["spec"]["activeDeadlineSeconds"] == 3600


def test_s3_secret_keys_are_mapped_one_by_one():
    """A TrainJob has no envFrom: each key of the Secret becomes an optional secretKeyRef."""
    env = make()["spec"]["trainer"]["env"]
    assert env[0] == {"name": "NCCL_DEBUG", "value": "WARN"}
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env[1:]}
    assert set(refs) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"}
    assert all(r == {"name": "s3-credentials", "key": k, "optional": True} for k, r in refs.items())
    assert [e["name"] for e in make(secret_name=None)["spec"]["trainer"]["env"]] == ["NCCL_DEBUG"]


def test_pods_get_placement_shm_labels_and_a_restricted_security_context():
    job = make(queue_name="team-gpus")
    _, pod = pod_patch(job)
    spec = pod["spec"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}]
    assert spec["containers"][0]["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]
    assert spec["serviceAccountName"] == "pipeline-runner"
    assert spec["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    labels = pod["metadata"]["labels"]
    # the PodMonitor and the training-peers NetworkPolicy (manifests/base) select the component label
    assert labels["app.kubernetes.io/component"] == "simclr-pretrain" and labels["team"] == "vision"
    assert pod["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    # Kueue admits the TrainJob by the label on the job itself (its integration trainer.kubeflow.org/trainjob)
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-gpus"
    assert "kueue.x-k8s.io/queue-name" not in labels and "kueue.x-k8s.io/queue-name" not in make()["metadata"]["labels"]


def test_cpu_only_pods_ask_for_no_gpu_and_tolerate_nothing_extra():
    job = make(gpus_per_node=0)
    _, pod = pod_patch(job)
    assert job["spec"]["trainer"]["numProcPerNode"] == 1
    assert "nvidia.com/gpu" not in job["spec"]["trainer"]["resourcesPerNode"]["limits"]
    assert pod["spec"]["tolerations"] == []


def test_what_a_trainjob_cannot_say_is_refused_in_one_line():
    with pytest.raises(UserError, match="cannot set priorityClassName") as err:
        make(priority_class="kubeclr-gpu-training")
    assert "\n" not in str(err.value) and "cluster.runtime_name" in str(err.value)
    with pytest.raises(UserError, match="PET_MASTER_PORT is set by Trainer's torch plugin"):
        make(env={"PET_MASTER_PORT": "1"})
