"""The ``simclr-pipeline`` argument parser: every command, flag, default and help text."""

from __future__ import annotations

import argparse
import textwrap

from kubeclr import __version__
from kubeclr.cli.make_shards import add_make_shards_parser
from kubeclr.cli.options import add_sweep_args
from kubeclr.cli.serve import add_serve_parser
from kubeclr.config import DEFAULT_PRESET, preset_names
from kubeclr.launch.settings import CompileOptions, LaunchSettings
from kubeclr.pipelines import run_tasks_text
from kubeclr.serving import MODEL_FILES

DEFAULTS = LaunchSettings()  # the pods' defaults, defined once
STEP_DEFAULTS = CompileOptions()


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Wrap each line of a description or epilog, leave indented lines (example commands) as they
    are; show a default where there is one to show.

    (argparse's ArgumentDefaultsHelpFormatter also prints 'default: None' after
    help that already names its default, and 'default: True' on flags.)
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(
            indent + line if line[:1].isspace() or not line else textwrap.fill(line, width, initial_indent=indent)
            for line in text.splitlines()
        )

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or isinstance(default, bool)
            or default in ([], "")
            or default is argparse.SUPPRESS
            or action.option_strings == []
            or action.nargs == 0
        ):
            return text
        return f"{text} (default: %(default)s)"


# Cluster commands compile for GPUs: they never fall back to the CPU demo (`smoke`, synthetic data).
CLUSTER_PRESET = "fast"

# What `run --local` copies to --output-dir: the files of kubeclr.cli.local_run's RESULT_FILES and the
# export folder's MODEL_FILES; a sweep: its SWEEP_FILES (tests/unit/test_cli_text.py holds them equal).
RUN_FILES = ("metrics.json", "report.html", "report.md", "encoder.pt", *MODEL_FILES)
SWEEP_RUN_FILES = ("leaderboard.json", "leaderboard.html", "leaderboard.md", "encoder.pt")
EXAMPLE_HOST = "https://kubeflow.example.com/pipeline"


def _listed(names: tuple[str, ...]) -> str:
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _config_args(p: argparse.ArgumentParser, default: str = DEFAULT_PRESET) -> None:
    p.set_defaults(default_preset=default)
    g = p.add_argument_group("configuration")
    which = g.add_mutually_exclusive_group()
    which.add_argument("--preset", help=f"preset in configs/ ({', '.join(preset_names())}; default: {default})")
    which.add_argument("--config", metavar="FILE", help="YAML config file (instead of a preset)")
    g.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config key (repeatable); see `simclr-pipeline keys`",
    )


def _client_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Kubeflow Pipelines API")
    g.add_argument("--host", required=True, help="KFP API endpoint, e.g. https://kubeflow.example.com/pipeline")
    g.add_argument("--namespace", help="Kubeflow profile namespace (multi-user Kubeflow)")
    g.add_argument("--token", help="existing bearer token (default: $KF_PIPELINES_TOKEN if set)")
    g.add_argument("--cookies", help="cookie header, e.g. 'authservice_session=…' (Dex/oauth2-proxy login)")
    g.add_argument("--ssl-ca-cert", metavar="FILE", help="CA bundle for a private TLS endpoint")


def _job_args(g: argparse._ArgumentGroup) -> None:
    """Settings of the pretraining pods and of multi-node jobs (compile options and render-job)."""
    g.add_argument("--image", default=DEFAULTS.image, help="image every step runs on (pinned tag or digest)")
    g.add_argument(
        "--node-selector",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="node selector for the GPU steps (repeatable), e.g. nvidia.com/gpu.present=true",
    )
    g.add_argument(
        "--secret-name",
        default=DEFAULTS.secret_name,
        help="Kubernetes Secret with AWS_* S3 credentials exposed to every step ('' = none, e.g. IRSA)",
    )
    g.add_argument("--pretrain-cpu", default=DEFAULTS.cpu, help="CPU request and limit of the pretrain pod")
    g.add_argument("--pretrain-memory", default=DEFAULTS.memory, help="memory request and limit of the pretrain pod")
    g.add_argument(
        "--shm-size", default=DEFAULTS.shm_size, help="size of the memory-backed /dev/shm of the pretrain pod"
    )
    g.add_argument("--timeout", type=int, default=DEFAULTS.timeout_s, help="pretrain timeout in seconds")
    g.add_argument(
        "--queue-name",
        default=DEFAULTS.queue_name,
        help="Kueue LocalQueue: the kueue.x-k8s.io/queue-name label on the GPU pods and the multi-node job",
    )
    g.add_argument(
        "--priority-class",
        default=DEFAULTS.priority_class,
        help="nodes > 1, PyTorchJob: PriorityClass of the job's pods, e.g. kubeclr-gpu-training (manifests/base)",
    )
    g.add_argument(
        "--keep-jobs",
        "--keep-pytorchjobs",
        dest="keep_jobs",
        action="store_true",
        help="nodes > 1: keep the finished job (and its pods' logs) instead of deleting it",
    )


def _compile_args(p: argparse.ArgumentParser, *, package: bool = False) -> None:
    g = p.add_argument_group("compile options")
    if package:
        g.add_argument(
            "--package",
            metavar="FILE",
            help="use this compiled YAML instead of compiling (the options below are then unused)",
        )
    _job_args(g)
    g.add_argument("--pipeline-root", help="artifact root, e.g. s3://bucket/pipeline-root (default: the cluster's)")
    g.add_argument("--step-cpu", default=STEP_DEFAULTS.step_cpu, help="CPU request of every step but pretrain")
    g.add_argument(
        "--step-memory", default=STEP_DEFAULTS.step_memory, help="memory request and limit of every step but pretrain"
    )
    g.add_argument(
        "--extract-gpu",
        action=argparse.BooleanOptionalAction,
        default=STEP_DEFAULTS.extract_gpu,
        help="run extract_features on a GPU (--no-extract-gpu: only pretrain requests one, e.g. for CPU-only "
        "clusters or gpus_per_node=0 runs)",
    )
    g.add_argument(
        "--retries", type=int, default=STEP_DEFAULTS.pretrain_retries, help="pretrain retries (each resumes)"
    )
    g.add_argument("--cache-pretrain", action="store_true", help="allow KFP to cache the pretrain step")
    deploy_help = "add the deploy step: a run that passes its gate and deploy.min_test_top1 creates or patches"
    g.add_argument("--deploy", action="store_true", help=deploy_help + " its KServe InferenceService (deploy.*)")
    g.add_argument(
        "--launcher",
        action="store_true",
        help="multi-node variant: pretrain only launches a TrainJob/PyTorchJob (needs nodes >= 2), so that "
        "step holds no GPU while the job's pods train",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simclr-pipeline",
        formatter_class=_Formatter,
        description="SimCLR on CIFAR-10 as a Kubeflow pipeline: run it locally, or compile / upload / "
        "submit / schedule it on a cluster.",
        epilog="examples:\n  simclr-pipeline run --local --preset smoke --output-dir outputs/demo\n"
        "  simclr-pipeline compile --preset fast --output simclr.yaml\n"
        "  simclr-pipeline submit --host https://kfp.example.com --preset fast --param epochs=200",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "run",
        formatter_class=_Formatter,
        help="run the whole pipeline locally (kfp.local)",
        description=f"Run the pipeline through kfp.local on this machine (on its GPU if it has one). It runs "
        f"{run_tasks_text()}, then copies {_listed(RUN_FILES)} to --output-dir (a sweep: "
        f"{', '.join(SWEEP_RUN_FILES[:-1])} and the winner's encoder.pt; its trials run one after another). "
        "It contacts no cluster: only the dataset's source and the s3:// or Pushgateway URIs the config names.",
        epilog="example:\n  simclr-pipeline run --local --preset smoke --output-dir outputs/demo",
    )
    p.add_argument("--local", action="store_true", required=True, help="run locally (the only mode of `run`)")
    _config_args(p)
    add_sweep_args(p)
    p.add_argument(
        "--data-source",
        "--cifar-source",  # its name before 0.3, still accepted
        dest="data_source",
        help="the dataset, in any supported format (data.format: cifar10, cifar100, stl10, imagefolder): "
        "https://…, s3://bucket/key, an s3:// prefix or a folder (image folders), file:///path, a path, "
        "'sample' (CIFAR-10 layout) or 'sample-folder' (image folder) (default: the preset's data.source; "
        "--cifar-source is its old name)",
    )
    p.add_argument(
        "--data-md5",
        "--cifar-md5",
        dest="data_md5",
        metavar="HEX|none",
        help="expected MD5 (default: the preset's data.md5; --cifar-md5 is its old name)",
    )
    p.add_argument("--checkpoint-uri", help="file:// or s3:// prefix for checkpoints; resumes from the newest")
    p.add_argument("--output-dir", default="outputs", help="where the result files are copied")
    p.add_argument("--run-name", help="run name (default: simclr-<preset>-<UTC time>)")
    p.add_argument(
        "--workdir",
        help="kfp.local pipeline root; each run adds a folder of every step's artifacts "
        "there (default: <output-dir>/.kfp)",
    )

    p = sub.add_parser(
        "compile",
        formatter_class=_Formatter,
        help="write the pipeline IR YAML",
        description="Compile the pipeline into the IR YAML that the Kubeflow UI uploads.",
    )
    _config_args(p, CLUSTER_PRESET)
    add_sweep_args(p)
    _compile_args(p)
    p.add_argument("--output", default="simclr.yaml", help="IR YAML to write")

    add_serve_parser(sub, _Formatter)

    p = sub.add_parser(
        "upload",
        formatter_class=_Formatter,
        help="upload the pipeline (or a new version)",
        description="Compile the pipeline (or take --package FILE) and upload it to the Kubeflow Pipelines API "
        "at --host: a new pipeline named --pipeline-name, or a new version of it when that name exists. "
        "Contacts only the KFP API; no run starts. Prints the pipeline's and the version's IDs as JSON.",
        epilog=f"example:\n  simclr-pipeline upload --host {EXAMPLE_HOST} --namespace team-a \\\n"
        "    --preset fast --image REGISTRY/kubeclr:TAG --pipeline-root s3://bucket/pipeline-root",
    )
    _client_args(p)
    _config_args(p, CLUSTER_PRESET)
    add_sweep_args(p)
    _compile_args(p, package=True)
    p.add_argument("--pipeline-name", default="simclr", help="pipeline name in the UI")
    p.add_argument("--version", dest="pipeline_version", help="version name (default: <version>-<UTC time>)")
    p.add_argument("--description", default="SimCLR on CIFAR-10 (kubeclr)", help="pipeline description")

    for name, helptext, description, example in (
        (
            "submit",
            "start one run",
            "Compile the pipeline (or take --package FILE), check --param against it and the config the run "
            "would resolve, then start one run in --experiment on the Kubeflow Pipelines API at --host. "
            "Contacts only the KFP API (the run's pods then reach the GPU nodes and object storage). "
            "Prints the run's ID and URL as JSON.",
            f"simclr-pipeline submit --host {EXAMPLE_HOST} --preset fast --param epochs=200",
        ),
        (
            "schedule",
            "create a recurring run",
            "Compile the pipeline (or take --package FILE), check --param and the cron expression, then create "
            "a recurring run (a KFP job) on the Kubeflow Pipelines API at --host: by default no catch-up after a "
            "pause and one run at a time. Contacts only the KFP API. Prints the recurring run's ID and URL as JSON.",
            f'simclr-pipeline schedule --host {EXAMPLE_HOST} --preset fast --cron "0 0 3 * * *"',
        ),
    ):
        p = sub.add_parser(
            name,
            formatter_class=_Formatter,
            help=helptext,
            description=description,
            epilog=f"example (nightly at 03:00):\n  {example}" if name == "schedule" else f"example:\n  {example}",
        )
        _client_args(p)
        _config_args(p, CLUSTER_PRESET)
        add_sweep_args(p)
        _compile_args(p, package=True)
        p.add_argument("--experiment", default="simclr", help="experiment name (created if missing)")
        p.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="pipeline parameter (repeatable), e.g. epochs=200, data_source=s3://b/k (cifar_source: its old name)",
        )
        p.add_argument("--run-name", help="run name (default: simclr-<UTC time>)")
        p.add_argument(
            "--service-account",
            default="kubeclr-pipeline-runner",
            help="Kubernetes service account of the run's pods (manifests/base; '' = the cluster's)",
        )
        if name == "schedule":
            p.add_argument(
                "--cron", required=True, help='6-field KFP cron, seconds first, e.g. "0 0 3 * * *" (03:00 daily)'
            )
            p.add_argument(
                "--catchup",
                dest="no_catchup",
                action="store_false",
                help="run the intervals missed while paused, once resumed",
            )
            p.add_argument(
                "--no-catchup",
                dest="no_catchup",
                action="store_true",
                default=True,
                help="skip the intervals missed while paused (the default)",
            )
            p.add_argument("--max-concurrency", type=int, default=1, help="runs allowed at once")
            p.add_argument("--start-time", help="ISO 8601 time the schedule starts")
            p.add_argument("--end-time", help="ISO 8601 time the schedule ends")
            p.add_argument("--job-name", help="recurring run name (default: simclr-<preset>-recurring)")

    p = sub.add_parser(
        "bench",
        formatter_class=_Formatter,
        help="throughput benchmark (ours vs the compute limit vs the seed article's PIL path)",
        description="Measure pretraining throughput on this machine, in one process on one device, with the "
        "preset's model and batch size on synthetic images: our training step, the compute limit of the "
        "same model, the seed article's PIL data path, augmentation alone and feature extraction. Prints a "
        "table (and writes --json FILE). Contacts nothing; downloads nothing.",
        epilog="example:\n  simclr-pipeline bench --device cuda --preset fast --json bench.json",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    _config_args(p)
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")

    p = sub.add_parser(
        "render-job",
        formatter_class=_Formatter,
        help="print the multi-node job the launcher would create (YAML; contacts nothing)",
        description="Print, as YAML, the exact TrainJob or PyTorchJob that the pretrain step creates when "
        "nodes > 1, for review, GitOps or `kubectl apply --dry-run=server -f -`. Nothing is contacted.",
    )
    p.add_argument(
        "--engine", choices=("trainjob", "pytorchjob"), help="the job's kind (default: the config's cluster.engine)"
    )
    p.add_argument("--nodes", type=int, default=2, help="pods of the job")
    p.add_argument("--gpus-per-node", type=int, default=1, help="GPUs (= torchrun processes) per pod")
    p.add_argument(
        "--namespace",
        dest="job_namespace",
        default="default",
        help="namespace of the job (the step uses its own pod's namespace)",
    )
    p.add_argument(
        "--service-account",
        dest="job_service_account",
        default="kubeclr-pipeline-runner",
        help="service account of the job's pods (the step passes on its own pod's; '' = the namespace default)",
    )
    p.add_argument("--run-name", default="simclr", help="labels the pods' metrics")
    p.add_argument(
        "--checkpoint-uri",
        help="the run's s3:// checkpoint prefix, as the step would see it (default: the config's "
        "storage.checkpoint_uri; a placeholder when that is empty)",
    )
    _config_args(p, CLUSTER_PRESET)
    _job_args(p.add_argument_group("job options"))

    p = sub.add_parser(
        "keys",
        formatter_class=_Formatter,
        help="list every config key with its type, default and rule",
        description="List every config key (for --set and config files) with its type, default, rule and meaning; "
        "with --preset or --config, also the value that preset or file gives it. Contacts nothing.",
        epilog="example:\n  simclr-pipeline keys --preset smoke",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--preset", help=f"show this preset's values ({', '.join(preset_names())})")
    which.add_argument("--config", metavar="FILE", help="show this YAML config file's values")

    add_make_shards_parser(sub, _Formatter)
    return parser
