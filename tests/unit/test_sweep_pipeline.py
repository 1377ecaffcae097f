"""The sweep variant's IR: data steps once, one ParallelFor of GPU trials, a leaderboard over collected lists."""

import json
import subprocess
import sys

import pytest
import yaml

from kubeclr.config import load_config
from kubeclr.config.sweep import build_sweep
from kubeclr.errors import UserError
from kubeclr.launch.settings import LaunchSettings
from kubeclr.pipelines.simclr import CompileOptions, compile_pipeline

TRIAL_TASKS = {"trial-config", "pretrain", "extract-features", "linear-eval"}


@pytest.fixture(scope="module")
def ir(tmp_path_factory):
    cfg = load_config("fast")
    spec = tmp_path_factory.mktemp("spec") / "sweep.yaml"
    spec.write_text("grid: {pretrain.lr: [0.5, 1.0, 1.5], pretrain.temperature: [0.1, 0.5]}\nparallelism: 3\n")
    sweep = build_sweep(cfg, spec)
    path = spec.parent / "p.yaml"
    opts = CompileOptions(
        launch=LaunchSettings(node_selector={"nvidia.com/gpu.present": "true"}, queue_name="team-gpu", secret_name="s3")
    )
    compile_pipeline(cfg, str(path), opts, sweep=sweep)
    pipeline, platform = yaml.safe_load_all(path.read_text())
    return pipeline, platform, sweep


def _loop(spec):
    loops = [(name, t) for name, t in spec["root"]["dag"]["tasks"].items() if "parameterIterator" in t]
    assert len(loops) == 1
    return loops[0]


def test_the_data_steps_run_once_outside_one_parallel_for_with_the_requested_parallelism(ir):
    spec, _, sweep = ir
    root = spec["root"]["dag"]["tasks"]
    name, loop = _loop(spec)
    assert set(root) == {"resolve-config", "download-split", "compute-stats", name, "leaderboard"}
    assert loop["iteratorPolicy"] == {"parallelismLimit": 3}
    assert json.loads(loop["parameterIterator"]["items"]["raw"]) == sweep.items()
    body = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert set(body) == TRIAL_TASKS
    assert "report" not in root and "regression-gate" not in root  # the leaderboard takes their place
    assert spec["pipelineInfo"]["name"] == "simclr-sweep"


def test_each_trial_pretrains_with_its_own_config_and_checkpoint_scope(ir):
    spec, _, _ = ir
    _, loop = _loop(spec)
    body = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    pretrain = body["pretrain"]["inputs"]["parameters"]
    for key in ("checkpoint_scope", "run_name"):
        assert pretrain[key]["taskOutputParameter"] == {"outputParameterKey": key, "producerTask": "trial-config"}
    for step in ("pretrain", "extract-features", "linear-eval"):  # each its slice of the trial's config
        given = body[step]["inputs"]["parameters"]["config"]["taskOutputParameter"]
        assert given == {"outputParameterKey": step.replace("-", "_"), "producerTask": "trial-config"}
    scope = body["trial-config"]["inputs"]["parameters"]["checkpoint_scope"]["runtimeValue"]["constant"]
    assert scope == "{{$.pipeline_job_uuid}}"  # <run ID>/trial-NN-<digest>: a retry resumes, trials never share


def test_the_per_trial_pretrain_task_keeps_the_gpu_settings(ir):
    spec, platform, _ = ir
    resources = spec["deploymentSpec"]["executors"]["exec-pretrain"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["resourceCpuRequest"] == "8" and resources["resourceMemoryLimit"] == "32Gi"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-pretrain"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in k8s["tolerations"]
    assert k8s["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert k8s["podMetadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-gpu"
    assert any(v["mountPath"] == "/dev/shm" for v in k8s["emptyDirMounts"])
    assert "exec-leaderboard" in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]  # S3 Secret


def test_the_leaderboard_consumes_collected_lists_and_is_the_runs_output(ir):
    spec, _, sweep = ir
    name, _ = _loop(spec)
    board = spec["root"]["dag"]["tasks"]["leaderboard"]
    for key, output in (
        ("histories", "pretrain-history"),
        ("results", "linear-eval-results"),
        ("encoders", "pretrain-encoder"),
    ):
        assert board["inputs"]["artifacts"][key]["taskOutputArtifact"] == {
            "outputArtifactKey": f"pipelinechannel--{output}",
            "producerTask": name,
        }
        assert spec["components"]["comp-leaderboard"]["inputDefinitions"]["artifacts"][key]["isArtifactList"] is True
    assert board["inputs"]["parameters"]["sweep"]["runtimeValue"]["constant"] == json.loads(json.dumps(sweep.spec()))
    outputs = spec["root"]["dag"]["outputs"]["artifacts"]
    assert outputs["encoder"]["artifactSelectors"] == [
        {"outputArtifactKey": "encoder", "producerSubtask": "leaderboard"}
    ]
    assert outputs["report"]["artifactSelectors"] == [{"outputArtifactKey": "html", "producerSubtask": "leaderboard"}]


def test_compile_sweep_through_the_cli(tmp_path):
    out = tmp_path / "sweep.yaml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubeclr.cli",
            "compile",
            "--sweep-set",
            "pretrain.seed=0,1",
            "--sweep-set",
            "pretrain.temperature=0.2,0.5",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "a sweep of 4 trials (1 at once)" in proc.stdout
    spec = next(yaml.safe_load_all(out.read_text()))
    _, loop = _loop(spec)
    assert len(json.loads(loop["parameterIterator"]["items"]["raw"])) == 4


def test_a_sweep_refuses_deploy_and_registry(tmp_path):
    cfg = load_config("fast")
    sweep = build_sweep(cfg, None, ["pretrain.temperature=0.2,0.5"])
    with pytest.raises(UserError, match="a sweep ends at its leaderboard"):
        compile_pipeline(cfg, str(tmp_path / "p.yaml"), CompileOptions(deploy=True), sweep=sweep)
    with pytest.raises(UserError, match="drop --deploy / registry.url"):
        compile_pipeline(cfg.override({"registry.url": "http://mr:8080"}), str(tmp_path / "p.yaml"), sweep=sweep)
    assert not (tmp_path / "p.yaml").exists()
