"""Compile the pipeline and inspect the IR the cluster will run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import kubeclr
from kubeclr.config import UI_PARAMS, load_config
from kubeclr.config.load import key_rows
from kubeclr.launch.settings import LaunchSettings
from kubeclr.pipelines import RUN_TASKS, run_tasks_text
from kubeclr.pipelines.simclr import CompileOptions, compile_pipeline

README = Path(__file__).resolve().parents[2] / "README.md"

STEPS = {"download-split", "compute-stats", "pretrain", "extract-features", "linear-eval", "report"}
# The DAG of docs/architecture.md: which task consumes which producer's outputs.
# Every task but compute_stats (which reads no config key) also consumes resolve_config's output.
EDGES = {
    "download-split": {"resolve-config"},
    "regression-gate": {"resolve-config", "report"},
    "compute-stats": {"download-split"},
    "pretrain": {"resolve-config", "download-split", "compute-stats"},
    "extract-features": {"resolve-config", "download-split", "compute-stats", "pretrain"},
    "linear-eval": {"resolve-config", "download-split", "compute-stats", "pretrain", "extract-features"},
    "report": {"resolve-config", "download-split", "compute-stats", "pretrain", "extract-features", "linear-eval"},
    "export-model": {"resolve-config", "download-split", "compute-stats", "pretrain", "linear-eval"},
}


@pytest.fixture(scope="module")
def ir_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("ir") / "p.yaml"
    opts = CompileOptions(
        launch=LaunchSettings(node_selector={"nvidia.com/gpu.present": "true"}), pipeline_root="s3://bucket/root"
    )
    compile_pipeline(load_config("fast"), str(path), opts)
    return path


@pytest.fixture(scope="module")
def ir(ir_path):
    docs = list(yaml.safe_load_all(ir_path.read_text()))
    return docs[0], docs[1]


def test_six_tasks_with_the_design_edges(ir):
    spec, _ = ir
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == STEPS | {"resolve-config", "export-model", "regression-gate"}
    assert set(tasks) == {name.replace("_", "-") for name in RUN_TASKS}
    for name, producers in EDGES.items():
        assert set(tasks[name]["dependentTasks"]) == producers, name
    assert "dependentTasks" not in tasks["resolve-config"]
    assert spec["pipelineInfo"]["name"] == "simclr"
    assert spec["defaultPipelineRoot"] == "s3://bucket/root"


def test_display_names_and_caching(ir):
    tasks = ir[0]["root"]["dag"]["tasks"]
    names = {t: tasks[t]["taskInfo"]["name"] for t in tasks}
    assert names["pretrain"] == "SimCLR pretraining (GPU)"
    assert names["download-split"] == "Download, decode & split the dataset"
    for data_step in ("download-split", "compute-stats"):
        assert tasks[data_step]["cachingOptions"].get("enableCache") is True
    assert not tasks["pretrain"]["cachingOptions"].get("enableCache")
    assert not tasks["resolve-config"]["cachingOptions"].get("enableCache")


def test_cached_steps_take_nothing_that_differs_every_run(ir):
    """KFP resolves the run's name and ID into a task's inputs before computing its cache key."""
    tasks = ir[0]["root"]["dag"]["tasks"]
    cached = [name for name, t in tasks.items() if t.get("cachingOptions", {}).get("enableCache")]
    assert {"download-split", "compute-stats", "extract-features", "linear-eval"} <= set(cached)
    for name in cached:
        text = json.dumps(tasks[name]["inputs"])
        assert "pipeline_job" not in text, name  # {{$.pipeline_job_name}}, {{$.pipeline_job_uuid}}, …


def test_the_data_step_cache_key_follows_the_source_content(ir):
    """The never-cached resolve_config's fingerprint is an input of the cached data step: same content, cache hit."""
    tasks = ir[0]["root"]["dag"]["tasks"]
    param = tasks["download-split"]["inputs"]["parameters"]["source_fingerprint"]
    assert param["taskOutputParameter"] == {
        "producerTask": "resolve-config",
        "outputParameterKey": "source_fingerprint",
    }
    for name in ("data_source", "data_md5", "data_format", "config"):
        assert tasks["resolve-config"]["inputs"]["parameters"][name]["componentInputParameter"] == name


def test_run_page_artifact_types(ir):
    """The run page renders these types inline: scalars, the confusion matrix, the report, the summary."""
    comps = ir[0]["components"]

    def types(step):
        outputs = comps[f"comp-{step}"]["outputDefinitions"]["artifacts"]
        return {name: out["artifactType"]["schemaTitle"] for name, out in outputs.items()}

    assert types("linear-eval") == {
        "metrics": "system.Metrics",
        "confusion": "system.ClassificationMetrics",
        "classifier": "system.Model",
        "results": "system.Dataset",
    }
    assert types("report") == {
        "html": "system.HTML",
        "summary": "system.Markdown",
        "metrics_json": "system.Dataset",
        "metrics": "system.Metrics",
    }


def test_pretrain_requests_gpus_cpu_memory_and_retries(ir):
    spec, _ = ir
    container = spec["deploymentSpec"]["executors"]["exec-pretrain"]["container"]
    res = container["resources"]
    assert res["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert res["resourceCpuLimit"] == "8" and res["resourceMemoryLimit"] == "32Gi"
    assert res["resourceCpuRequest"] == "8" and res["resourceMemoryRequest"] == "32Gi"
    # the GPU count is the `gpus_per_node` run parameter
    params = spec["root"]["dag"]["tasks"]["pretrain"]["inputs"]["parameters"]
    assert "pipelinechannel--gpus_per_node" in params["accelerator_count"]["runtimeValue"]["constant"]
    retry = spec["root"]["dag"]["tasks"]["pretrain"]["retryPolicy"]
    assert retry["maxRetryCount"] == 2
    # checkpoints are scoped by the KFP run ID: retries resume, the next scheduled run starts fresh
    assert params["checkpoint_scope"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"


def test_kubernetes_platform_config(ir):
    _, platform = ir
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    pre = executors["exec-pretrain"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pre["tolerations"]
    shm = pre["emptyDirMounts"][0]
    assert (shm["mountPath"], shm["medium"], shm["sizeLimit"]) == ("/dev/shm", "Memory", "8Gi")
    assert pre["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert int(pre["activeDeadlineSeconds"]) == 86400
    assert pre["podMetadata"]["labels"]["app.kubernetes.io/component"] == "simclr-pretrain"
    for name in ("exec-download-split", "exec-pretrain", "exec-report"):
        secret = executors[name]["secretAsEnv"][0]
        assert secret["secretName"] == "kubeclr-s3-credentials"
        envs = {m["envVar"] for m in secret["keyToEnv"]}
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"} <= envs


def test_no_runtime_pip_and_one_pinned_image(ir):
    spec, _ = ir
    executors = spec["deploymentSpec"]["executors"]
    assert len(executors) == 9  # the six steps, resolve_config, the export and the regression gate
    for name, ex in executors.items():
        container = ex["container"]
        assert container["image"] == kubeclr.IMAGE, name
        assert container["image"].endswith(":" + kubeclr.__version__)
        assert not container["image"].endswith(":latest")
        text = " ".join(container["command"] + container.get("args", []))
        assert "pip install" not in text and "pip3 install" not in text, name


def test_parameters_default_to_the_preset(ir):
    params = ir[0]["root"]["inputDefinitions"]["parameters"]
    fast = load_config("fast")
    assert params["epochs"]["defaultValue"] == fast.pretrain.epochs
    assert params["batch_size"]["defaultValue"] == fast.pretrain.batch_size
    assert params["arch"]["defaultValue"] == "resnet18"
    assert params["config"]["defaultValue"]["pretrain"]["compile"] is True
    assert "NT-Xent temperature" in params["temperature"]["description"]
    for name in (
        "arch",
        "epochs",
        "batch_size",
        "lr",
        "temperature",
        "gpus_per_node",
        "nodes",
        "data_source",
        "checkpoint_uri",
        "run_name",
    ):
        assert params[name].get("description"), name


def test_the_run_help_and_the_readme_name_the_compiled_tasks(ir):
    """`run --help` and the README say what a run executes in words made from RUN_TASKS, which is the DAG."""
    tasks = ir[0]["root"]["dag"]["tasks"]
    said = run_tasks_text()
    words = {8: "eight", 9: "nine", 10: "ten", 11: "eleven"}
    assert said.startswith(f"{words[len(tasks)]} tasks: the six ML steps ("), said
    for name in tasks:
        assert name.replace("-", "_") in said, name
    help_text = subprocess.run(
        [sys.executable, "-m", "kubeclr.cli", "run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert said in " ".join(help_text.split())
    assert said in " ".join(README.read_text().replace("`", "").split()), "README: say what a run executes"


def test_integer_parameters_are_integers_in_the_ir(ir_path, ir):
    """KFP writes every default as a float (protobuf Value); the file has the integers they were compiled from."""
    params = ir[0]["root"]["inputDefinitions"]["parameters"]
    for name in ("epochs", "batch_size", "gpus_per_node", "nodes"):
        assert params[name]["parameterType"] == "NUMBER_INTEGER", name
        assert type(params[name]["defaultValue"]) is int, name
    assert params["epochs"]["defaultValue"] == 200
    for name in ("lr", "temperature"):
        assert params[name]["parameterType"] == "NUMBER_DOUBLE" and type(params[name]["defaultValue"]) is float
    struct = params["config"]["defaultValue"]
    for key, kind, *_ in key_rows():
        section, name = key.split(".")
        if name in struct.get(section, {}) and kind in ("int", "float"):
            assert type(struct[section][name]).__name__ == kind, key  # width 64, not 64.0; lr 0.3 stays
    header = ir_path.read_text().split("\ncomponents:")[0]
    assert "#    epochs: int [Default: 200]" in header
    assert "'width': 64" in header and "'width': 64.0" not in header
    assert "#    lr: float [Default: 0.3]" in header


def test_latest_image_is_refused(tmp_path):
    from kubeclr.errors import UserError

    with pytest.raises(UserError, match="never :latest"):
        compile_pipeline(
            load_config("smoke"),
            str(tmp_path / "p.yaml"),
            CompileOptions(launch=LaunchSettings(image="repo/img:latest")),
        )
    assert not (tmp_path / "p.yaml").exists()


def test_cli_compile_with_image_override(tmp_path):
    out = tmp_path / "ir.yaml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubeclr.cli",
            "compile",
            "--preset",
            "smoke",
            "--output",
            str(out),
            "--image",
            "registry.local/kubeclr:9.9.9",
            "--secret-name",
            "my-s3",
            "--node-selector",
            "cloud.google.com/gke-accelerator=nvidia-h100-80gb",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    docs = list(yaml.safe_load_all(out.read_text()))
    images = {e["container"]["image"] for e in docs[0]["deploymentSpec"]["executors"].values()}
    assert images == {"registry.local/kubeclr:9.9.9"}
    pre = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-pretrain"]
    assert pre["secretAsEnv"][0]["secretName"] == "my-s3"
    assert pre["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}


def test_launcher_variant_holds_no_gpu(tmp_path):
    """`compile --launcher`: the pretrain pod only launches the multi-node job, so it requests no GPU (and no
    Kueue quota: the job carries the queue label)."""
    path = tmp_path / "p.yaml"
    compile_pipeline(load_config("fast"), str(path), CompileOptions(launch=LaunchSettings(launcher_only=True)))
    spec, platform = yaml.safe_load_all(path.read_text())
    container = spec["deploymentSpec"]["executors"]["exec-pretrain"]["container"]
    assert "accelerator" not in container["resources"]
    assert container["resources"]["resourceCpuLimit"] == "1"
    env = {e["name"]: e.get("value", "") for e in container["env"]}  # empty values are omitted
    settings = LaunchSettings.from_env(env)
    assert settings.launcher_only is True and settings.cpu == "8"  # the job's pods get 8
    pre = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-pretrain"]
    assert "emptyDirMounts" not in pre and "tolerations" not in pre
    assert spec["root"]["inputDefinitions"]["parameters"]["nodes"]["defaultValue"] == 2


def test_launcher_variant_refuses_one_node(tmp_path, monkeypatch):
    from kubeclr.errors import UserError
    from kubeclr.steps import pretrain as step

    monkeypatch.setenv("KUBECLR_LAUNCH", '{"launcher_only": true}')
    with pytest.raises(UserError, match="compiled with --launcher"):
        step.run(
            load_config("smoke"),
            tmp_path / "t.npz",
            tmp_path / "s.json",
            tmp_path / "e.pt",
            tmp_path / "h.json",
            run_name="r",
            nodes=1,
        )


def test_one_config_struct_plus_the_ui_parameters_and_no_key_twice(ir):
    from kubeclr.config.resolve import COMPILE_TIME

    params = ir[0]["root"]["inputDefinitions"]["parameters"]
    ui = [p.name for p in UI_PARAMS]
    assert set(params) == {"run_name", *ui, "gpus_per_node", "nodes", "config"}
    assert params["config"]["parameterType"] == "STRUCT"
    struct = params["config"]["defaultValue"]
    assert not set(COMPILE_TIME) & set(struct)  # the metrics section is in every task's environment instead
    in_struct = [f"{section}.{key}" for section, keys in struct.items() for key in keys]
    compile_time = [k for k in load_config("fast").dotted_keys() if k.split(".")[0] in COMPILE_TIME]
    homes = in_struct + [p.key for p in UI_PARAMS] + compile_time  # where each key can be set
    assert len(homes) == len(set(homes))  # no key both a UI parameter and inside `config`
    assert sorted(homes) == sorted(load_config("fast").dotted_keys())  # and none without a home


def test_the_config_and_the_ui_parameters_feed_one_uncached_task(ir):
    """The root `config` and every UI parameter are read by resolve_config alone, which is never cached."""
    tasks = ir[0]["root"]["dag"]["tasks"]
    ui = {p.name for p in UI_PARAMS} | {"config"}
    readers = {
        name
        for name, t in tasks.items()
        for param in t["inputs"].get("parameters", {}).values()
        if param.get("componentInputParameter") in ui
    }
    assert readers == {"resolve-config"}
    assert not tasks["resolve-config"]["cachingOptions"].get("enableCache")


def test_each_cached_task_takes_its_own_slice_and_no_gate_report_deploy_registry_or_metrics(ir):
    from kubeclr.components import sliced
    from kubeclr.config import config_slice
    from kubeclr.steps import reads

    tasks = ir[0]["root"]["dag"]["tasks"]
    cached = {n for n, t in tasks.items() if t["cachingOptions"].get("enableCache")}
    assert cached == {"download-split", "compute-stats", "extract-features", "linear-eval", "export-model"}
    for name in cached:
        given = tasks[name]["inputs"]["parameters"].get("config")
        if name == "compute-stats":
            assert given is None  # it reads no key
            continue
        key = name.replace("-", "_")
        assert given["taskOutputParameter"] == {"producerTask": "resolve-config", "outputParameterKey": key}
    pretrain = tasks["pretrain"]["inputs"]["parameters"]["config"][
        "taskOutputParameter"
    ]  # cached with --cache-pretrain
    assert pretrain == {"producerTask": "resolve-config", "outputParameterKey": "pretrain"}
    whole = load_config("fast")
    for task in sliced():
        assert not {"gate", "report", "deploy", "registry", "metrics"} & set(config_slice(whole, reads(task))), task
    for name in ("report", "regression-gate"):  # never cached: the whole config
        given = tasks[name]["inputs"]["parameters"]["config"]["taskOutputParameter"]
        assert given == {"producerTask": "resolve-config", "outputParameterKey": "config"}, name


def _changed(cfg, key):
    """``cfg`` with ``key`` set to another valid value."""
    import dataclasses

    from kubeclr.errors import ConfigError

    section, name = key.split(".")
    value = cfg.to_dict()[section][name]
    (field,) = [f for f in dataclasses.fields(getattr(cfg, section)) if f.name == name]
    if field.metadata.get("choices"):
        candidates = list(field.metadata["choices"])
    elif isinstance(value, bool):
        candidates = [not value]
    elif isinstance(value, (int, float)):
        candidates = [value + 1, value / 2, value * 2 or 0.5, value - 1, 64]
    elif isinstance(value, list):
        candidates = [[0.2, 1.0], [1e-3]]
    else:
        candidates = ["cuda" if value == "auto" else "x", "file:///tmp/x", "random:0.1", "0" * 32, "abc"]
    needs = {"data.stream": {"data.format": "webdataset"}}.get(key, {})  # valid only beside another value
    for candidate in candidates:
        try:
            changed = cfg.override({**needs, key: candidate})
        except ConfigError:
            continue
        if changed.to_dict()[section][name] != value:
            return changed
    raise AssertionError(f"no other valid value found for {key}")


def test_a_key_changes_the_input_of_exactly_the_tasks_that_read_it():
    """For every config key: change it, and exactly the cached tasks whose step READS its section (or the key
    itself) get a different config input; every other task's cache key stays as it was."""
    from kubeclr.components import sliced
    from kubeclr.config import config_slice
    from kubeclr.config.resolve import COMPILE_TIME
    from kubeclr.steps import reads

    base = load_config("fast")
    for key in base.dotted_keys():
        changed = _changed(base, key)
        for task in sliced():
            keys = reads(task)
            differs = config_slice(changed, keys) != config_slice(base, keys)
            section = key.split(".")[0]
            expected = section not in COMPILE_TIME and (section in keys or key in keys)
            assert differs == expected, (key, task)


def _compile(tmp_path, opts=None, preset="fast"):
    path = tmp_path / "p.yaml"
    compile_pipeline(load_config(preset), str(path), opts or CompileOptions())
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_every_task_requests_cpu_and_memory(ir):
    """A namespace whose ResourceQuota demands requests admits all six pods."""
    executors = ir[0]["deploymentSpec"]["executors"]
    for name, ex in executors.items():
        res = ex["container"].get("resources", {})
        assert res.get("resourceCpuRequest") and res.get("resourceMemoryRequest"), name
        assert res.get("resourceMemoryLimit"), name
    light = executors["exec-report"]["container"]["resources"]
    assert (light["resourceCpuRequest"], light["resourceMemoryRequest"]) == ("2", "8Gi")


def test_no_extract_gpu_leaves_only_pretrain_with_a_gpu(tmp_path):
    spec, platform = _compile(tmp_path, CompileOptions(extract_gpu=False))
    with_gpu = {
        n
        for n, ex in spec["deploymentSpec"]["executors"].items()
        if "accelerator" in ex["container"].get("resources", {})
    }
    assert with_gpu == {"exec-pretrain"}
    assert "tolerations" not in platform.get("exec-extract-features", {})
    default, _ = _compile(tmp_path)
    assert "accelerator" in default["deploymentSpec"]["executors"]["exec-extract-features"]["container"]["resources"]


def test_kueue_labels_only_when_asked(tmp_path):
    _, platform = _compile(tmp_path, CompileOptions(launch=LaunchSettings(queue_name="team-gpus")))
    for gpu_task in ("exec-pretrain", "exec-extract-features"):
        assert platform[gpu_task]["podMetadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-gpus"
    assert "podMetadata" not in platform.get("exec-report", {})
    _, plain = _compile(tmp_path)
    assert "kueue.x-k8s.io/queue-name" not in json.dumps(plain)


def test_launcher_variant_leaves_the_queue_label_to_the_job(tmp_path):
    opts = CompileOptions(launch=LaunchSettings(launcher_only=True, queue_name="team-gpus"))
    _, platform = _compile(tmp_path, opts)
    assert "kueue.x-k8s.io/queue-name" not in json.dumps(platform["exec-pretrain"])  # holds no GPU quota
    assert platform["exec-extract-features"]["podMetadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-gpus"


def test_the_report_records_the_run_id_and_the_image(ir):
    spec, platform = ir
    params = spec["root"]["dag"]["tasks"]["report"]["inputs"]["parameters"]
    assert params["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    env = spec["deploymentSpec"]["executors"]["exec-report"]["container"]["env"]
    assert {"name": "KUBECLR_IMAGE", "value": kubeclr.IMAGE} in env
    assert spec["root"]["inputDefinitions"]["parameters"]["history_uri"]["defaultValue"] == ""


def test_deploy_adds_a_step_after_the_export_and_the_report(tmp_path):
    path = tmp_path / "deploy.yaml"
    compile_pipeline(load_config("fast"), str(path), CompileOptions(deploy=True))
    spec, platform = yaml.safe_load_all(path.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks["deploy-model"]["dependentTasks"]) == {"resolve-config", "export-model", "report"}
    assert not tasks["deploy-model"]["cachingOptions"].get("enableCache")
    env = spec["deploymentSpec"]["executors"]["exec-deploy-model"]["container"]["env"]
    assert {"name": "KUBECLR_IMAGE", "value": kubeclr.IMAGE} in env  # the serve image is its -serve tag
    secrets = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-deploy-model"]
    assert secrets["secretAsEnv"][0]["secretName"] == "kubeclr-s3-credentials"  # it publishes the model
    without = tmp_path / "plain.yaml"
    compile_pipeline(load_config("fast"), str(without))
    assert "deploy-model" not in next(yaml.safe_load_all(without.read_text()))["root"]["dag"]["tasks"]


def test_a_registry_url_adds_the_registration_after_the_export(tmp_path):
    path = tmp_path / "registry.yaml"
    cfg = load_config("fast", None, ["registry.url=http://model-registry-service.kubeflow:8080"])
    compile_pipeline(cfg, str(path), CompileOptions())
    tasks = next(yaml.safe_load_all(path.read_text()))["root"]["dag"]["tasks"]
    assert set(tasks["register-model"]["dependentTasks"]) == {"resolve-config", "export-model"}
    assert not tasks["register-model"]["cachingOptions"].get("enableCache")
    plain = tmp_path / "plain.yaml"
    compile_pipeline(load_config("fast"), str(plain), CompileOptions())
    assert "register-model" not in next(yaml.safe_load_all(plain.read_text()))["root"]["dag"]["tasks"]


def test_every_task_carries_the_compile_time_metrics_section(tmp_path):
    """The metrics section is set at compile time and reaches every task in its environment, never as an input."""
    from kubeclr.config.resolve import METRICS_ENV

    cfg = load_config("smoke", None, ["metrics.pushgateway_url=http://pushgateway.monitoring:9091"])
    path = tmp_path / "p.yaml"
    compile_pipeline(cfg, str(path))
    spec = next(yaml.safe_load_all(path.read_text()))
    for name, ex in spec["deploymentSpec"]["executors"].items():
        env = {e["name"]: e["value"] for e in ex["container"].get("env", [])}
        assert json.loads(env[METRICS_ENV]) == cfg.to_dict()["metrics"], name
