"""kubeclr.cluster.kfp_client against a local server that plays the KFP v2beta1 REST API.

The real ``kfp.Client`` 2.17 does the HTTP; the fake server
(tests/kfp_fake_server.py) records what arrives, so these tests check the
bytes a real KFP API server would receive: the uploaded package, the pipeline
spec, typed run parameters, cron/no_catchup/max_concurrency, auth headers.
"""

# no `from __future__ import annotations`: kfp reads the component annotations at runtime

import socket
import sys
from pathlib import Path

import kfp
import pytest
import yaml
from kfp import compiler, dsl

import kubeclr
from kubeclr.cluster import kfp_checks, kfp_client, kfp_runs
from kubeclr.errors import UserError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds the fake server
from kfp_fake_server import API, FakeKfpServer

pytestmark = pytest.mark.integration


@dsl.component(base_image="python:3.11-slim", install_kfp_package=False)
def _repeat(text: str, times: int) -> str:
    return text * times


@dsl.pipeline(name="tiny-pipeline", description="one component, every parameter type")
def _tiny(
    text: str = "hi",
    times: int = 2,
    lr: float = 0.1,
    flag: bool = True,
    options: dict = {"a": 1},  # noqa: B006 - KFP reads these literals as the defaults
    sizes: list = [1, 2],  # noqa: B006 - KFP reads these literals as the defaults
):
    _repeat(text=text, times=times)


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pkg") / "tiny.yaml"
    compiler.Compiler().compile(_tiny, str(path))
    return path


@pytest.fixture(autouse=True)
def hermetic_kfp(monkeypatch, tmp_path):
    """No user context file, no KFP environment variables leak into a test."""
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp" / "context.json"))
    for name in (
        "KF_PIPELINES_TOKEN",
        "KF_PIPELINES_ENDPOINT",
        "KF_PIPELINES_UI_ENDPOINT",
        "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME",
        "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    with FakeKfpServer() as running:
        yield running


def _one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert isinstance(error.value, UserError)
    assert text and "\n" not in text and "Traceback" not in text
    return text


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------- upload


def test_upload_creates_pipeline_then_adds_versions(server, package):
    client = kfp_client.connect(server.url)
    first = kfp_runs.upload(
        client, str(package), pipeline_name="simclr", version=None, description="SimCLR on CIFAR-10"
    )
    assert first["created"] is True and first["pipeline_name"] == "simclr"
    [sent] = server.find("POST", f"{API}/pipelines/upload")
    assert sent.query["name"] == ["simclr"] and sent.query["description"] == ["SimCLR on CIFAR-10"]
    assert sent.files["uploadfile"] == package.read_bytes()
    assert first["url"].endswith(f"/#/pipelines/details/{first['pipeline_id']}")

    second = kfp_runs.upload(client, str(package), pipeline_name="simclr", version=None)
    third = kfp_runs.upload(client, str(package), pipeline_name="simclr", version="v-nightly")
    assert second["created"] is False and second["pipeline_id"] == first["pipeline_id"]
    assert second["version_name"].startswith(f"{kubeclr.__version__}-")
    sent_versions = server.find("POST", f"{API}/pipelines/upload_version")
    assert [r.query["pipelineid"] for r in sent_versions] == [[first["pipeline_id"]]] * 2
    assert [r.query["name"][0] for r in sent_versions] == [second["version_name"], "v-nightly"]
    assert sent_versions[1].files["uploadfile"] == package.read_bytes()
    assert third["version_id"] in server.versions and len(server.pipelines) == 1


def test_upload_server_refusal_is_one_line(server, package):
    client = kfp_client.connect(server.url)
    for _ in range(2):
        kfp_runs.upload(client, str(package), pipeline_name="simclr", version="v1")
    with pytest.raises(kfp_checks.KfpError) as error:
        kfp_runs.upload(client, str(package), pipeline_name="simclr", version="v1")
    text = _one_line(error)
    assert "HTTP 409" in text and "v1 already exists" in text and server.url in text


def test_upload_of_missing_package_names_the_file(server, tmp_path):
    client = kfp_client.connect(server.url)
    with pytest.raises(kfp_checks.KfpError) as error:
        kfp_runs.upload(client, str(tmp_path / "nope.yaml"), pipeline_name="x", version=None)
    assert "nope.yaml" in _one_line(error)
    assert not server.find("POST", f"{API}/pipelines/upload")


# ----------------------------------------------------------------------------- submit


def test_submit_sends_spec_and_typed_parameters(server, package):
    client = kfp_client.connect(server.url)
    params = {"times": "3", "lr": "1e-3", "flag": "false", "options": '{"b": 2}', "sizes": [4]}
    result = kfp_runs.submit(
        client, str(package), experiment="nightly", run_name="run-1", params=params, pipeline_root="s3://bucket/root"
    )
    [created] = server.find("POST", f"{API}/experiments")
    assert created.json["display_name"] == "nightly"
    [run] = server.find("POST", f"{API}/runs")
    expected = {"times": 3, "lr": 0.001, "flag": False, "options": {"b": 2}, "sizes": [4]}
    assert run.json["runtime_config"] == {"parameters": expected, "pipeline_root": "s3://bucket/root"}
    assert run.json["pipeline_spec"] == yaml.safe_load(package.read_text())
    assert run.json["display_name"] == "run-1"
    assert list(server.experiments) == [result["experiment_id"]] == [run.json["experiment_id"]]
    assert result["run_id"] in server.runs and result["url"].endswith(f"/#/runs/details/{result['run_id']}")

    again = kfp_runs.submit(client, str(package), experiment="nightly", run_name="run-2", params={})
    assert len(server.find("POST", f"{API}/experiments")) == 1  # the experiment is reused
    assert again["experiment_id"] == result["experiment_id"]
    assert server.find("POST", f"{API}/runs")[1].json["runtime_config"]["parameters"] == {}


def test_misspelled_parameter_fails_before_any_request(server, package):
    client = kfp_client.connect(server.url)
    before = len(server.requests)
    with pytest.raises(kfp_checks.KfpError) as error:
        kfp_runs.submit(client, str(package), experiment="e", run_name="r", params={"tims": 3})
    text = _one_line(error)
    assert "'tims'" in text and "did you mean 'times'" in text
    assert "allowed: flag, lr, options, sizes, text, times" in text
    assert len(server.requests) == before


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"times": 3.0}, {"times": 3}),
        ({"times": " 7 "}, {"times": 7}),
        ({"lr": 1}, {"lr": 1.0}),
        ({"flag": "Yes"}, {"flag": True}),
        ({"flag": 0}, {"flag": False}),
        ({"text": 5}, {"text": "5"}),
        ({"options": {"k": [1]}}, {"options": {"k": [1]}}),
        ({"sizes": "[]"}, {"sizes": []}),
    ],
)
def test_validate_params_coerces_to_declared_types(package, params, expected):
    assert kfp_checks.validate_params(params, kfp_checks.load_pipeline_spec(package)) == expected


@pytest.mark.parametrize(
    "params, kind",
    [
        ({"times": "3.5"}, "NUMBER_INTEGER"),
        ({"times": True}, "NUMBER_INTEGER"),
        ({"lr": "fast"}, "NUMBER_DOUBLE"),
        ({"flag": "maybe"}, "BOOLEAN"),
        ({"options": "[1]"}, "STRUCT"),
        ({"sizes": "{not json"}, "LIST"),
    ],
)
def test_validate_params_rejects_bad_values(package, params, kind):
    with pytest.raises(kfp_checks.KfpError) as error:
        kfp_checks.validate_params(params, kfp_checks.load_pipeline_spec(package))
    text = _one_line(error)
    assert kind in text and repr(next(iter(params))) in text


def test_validate_params_reports_missing_required():
    spec = {
        "root": {
            "inputDefinitions": {
                "parameters": {
                    "needed": {"parameterType": "STRING"},
                    "opt": {"parameterType": "STRING", "isOptional": True, "defaultValue": "x"},
                }
            }
        }
    }
    with pytest.raises(kfp_checks.KfpError, match="missing required pipeline parameter"):
        kfp_checks.validate_params({"opt": "y"}, spec)
    assert kfp_checks.validate_params({"needed": "n"}, spec) == {"needed": "n"}


# ----------------------------------------------------------------------------- schedule


def test_schedule_sends_cron_catchup_concurrency_and_window(server, package):
    client = kfp_client.connect(server.url)
    result = kfp_runs.schedule(
        client,
        str(package),
        experiment="weekly",
        job_name="retrain",
        cron="0  0 3 * * MON",
        params={"times": "4"},
        start_time="2030-01-01T00:00:00+02:00",
        end_time="2030-12-31T23:00:00",
    )
    [job] = server.find("POST", f"{API}/recurringruns")
    assert job.json["trigger"] == {
        "cron_schedule": {
            "cron": "0 0 3 * * MON",
            "start_time": "2029-12-31T22:00:00Z",
            "end_time": "2030-12-31T23:00:00Z",
        }
    }
    assert job.json["no_catchup"] is True and job.json["max_concurrency"] == 1
    assert job.json["mode"] == "ENABLE" and job.json["display_name"] == "retrain"
    assert job.json["runtime_config"]["parameters"] == {"times": 4}
    assert job.json["pipeline_spec"] == yaml.safe_load(package.read_text())
    assert job.json["experiment_id"] == result["experiment_id"]
    assert result["recurring_run_id"] in server.recurring_runs and result["cron"] == "0 0 3 * * MON"

    kfp_runs.schedule(
        client,
        str(package),
        experiment="weekly",
        job_name="backfill",
        cron="@every 6h",
        params={},
        no_catchup=False,
        max_concurrency=3,
        enabled=False,
    )
    job = server.find("POST", f"{API}/recurringruns")[1].json
    assert job["no_catchup"] is False and job["max_concurrency"] == 3 and job["mode"] == "DISABLE"
    assert job["trigger"]["cron_schedule"] == {"cron": "@every 6h"}


@pytest.mark.parametrize(
    "cron, needle",
    [
        ("0 3 * * *", "got 5"),  # Unix cron: robfig would read it seconds-first
        ("0 0 3 * * * *", "got 7"),
        ("every night please", "got 3"),
        ("garbage", "got 1"),
        ("0 0 24 * * *", "hour field '24' must be within 0-23"),
        ("0 60 3 * * *", "minute field '60'"),
        ("0 0 3 * * 8", "day-of-week field '8'"),
        ("0 0 3 * FOO *", "month field 'FOO'"),
        ("0 0 5-2 * * *", "descending range"),
        ("*/0 * * * * *", "bad step"),
        ("@sometimes", "unknown descriptor"),
    ],
)
def test_bad_cron_is_one_line_and_sends_nothing(server, package, cron, needle):
    client = kfp_client.connect(server.url)
    before = len(server.requests)
    with pytest.raises(kfp_checks.KfpError) as error:
        kfp_runs.schedule(client, str(package), experiment="e", job_name="j", cron=cron, params={})
    text = _one_line(error)
    assert needle in text and "0 0 3 * * *" in text and "second minute hour" in text
    assert len(server.requests) == before


@pytest.mark.parametrize(
    "cron",
    [
        "0 0 3 * * *",
        "*/15 * * * * *",
        "0 30 9 ? * MON-FRI",
        "0 0 0 1,15 jan,JUL 0",
        "0 0 */6 * * ?",
        "@daily",
        "@every 1h30m",
    ],
)
def test_valid_crons_pass(cron):
    assert kfp_checks.validate_cron(cron) == cron


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"start_time": "tomorrow"}, "bad start time 'tomorrow'"),
        ({"start_time": "2030-02-01", "end_time": "2030-01-01"}, "must be after start time"),
        ({"max_concurrency": 0}, "within 1-10"),
        ({"max_concurrency": 11}, "within 1-10"),
    ],
)
def test_schedule_rejects_bad_window_and_concurrency(server, package, kwargs, needle):
    client = kfp_client.connect(server.url)
    before = len(server.requests)
    with pytest.raises(kfp_checks.KfpError) as error:
        kfp_runs.schedule(client, str(package), experiment="e", job_name="j", cron="0 0 3 * * *", params={}, **kwargs)
    assert needle in _one_line(error) and len(server.requests) == before


# ----------------------------------------------------------------------------- auth and reachability


def test_token_and_cookies_reach_every_request(package):
    cookie = "authservice_session=MTcw; oauth2_proxy=abc"
    with FakeKfpServer(token="s3cret", cookie=cookie) as server:
        client = kfp_client.connect(server.url, existing_token="s3cret", cookies=cookie)
        kfp_runs.upload(client, str(package), pipeline_name="p", version=None)
        kfp_runs.submit(client, str(package), experiment="e", run_name="r", params={})
        kfp_runs.schedule(client, str(package), experiment="e", job_name="j", cron="0 0 3 * * *", params={})
        assert len(server.requests) >= 7
        assert {r.headers.get("authorization") for r in server.requests} == {"Bearer s3cret"}
        assert {r.headers.get("cookie") for r in server.requests} == {cookie}


def test_token_from_environment(monkeypatch):
    monkeypatch.setenv("KF_PIPELINES_TOKEN", "from-env")
    with FakeKfpServer(token="from-env") as server:
        kfp_client.connect(server.url)
        assert server.requests and all(r.headers["authorization"] == "Bearer from-env" for r in server.requests)


@pytest.mark.parametrize("token", [None, "wrong"])
def test_rejected_credentials_fail_at_connect_in_one_line(token):
    with FakeKfpServer(token="right") as server:
        with pytest.raises(kfp_checks.KfpError) as error:
            kfp_client.connect(server.url, existing_token=token)
        text = _one_line(error)
        assert "HTTP 401" in text and "--token" in text and server.url in text
        assert len(server.requests) == 1  # one probe, no retry loop


def test_namespace_goes_to_experiment(server, package):
    client = kfp_client.connect(server.url, namespace="team-a")
    kfp_runs.submit(client, str(package), experiment="e", run_name="r", params={})
    [listed] = server.find("GET", f"{API}/experiments")
    assert listed.query["namespace"] == ["team-a"]
    assert server.find("POST", f"{API}/experiments")[0].json["namespace"] == "team-a"


def test_unreachable_host_is_one_line_naming_it():
    host = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(kfp_checks.KfpError) as error:
        kfp_client.connect(host)
    text = _one_line(error)
    assert text.startswith(f"cannot reach the KFP API at {host}") and "Connection refused" in text


@pytest.mark.parametrize("host", ["localhost:8080", "ftp://x", ""])
def test_malformed_host_is_rejected(host):
    with pytest.raises(kfp_checks.KfpError, match="bad KFP host"):
        kfp_client.connect(host)


def test_wrong_path_is_not_a_kfp_api(server):
    with pytest.raises(kfp_checks.KfpError) as error:
        kfp_client.connect(server.url + "/not-kfp")
    assert "HTTP 404" in _one_line(error) and "--host" in str(error.value)


def test_stalled_server_times_out_and_post_is_sent_once(server, package):
    client = kfp_client.connect(server.url, timeout=0.5)
    server.stall_path = f"{API}/runs"
    with pytest.raises(kfp_checks.KfpError) as error:
        kfp_runs.submit(client, str(package), experiment="e", run_name="r", params={})
    text = _one_line(error)
    assert "submit of run 'r' failed" in text and "no answer" in text
    assert len(server.find("POST", f"{API}/runs")) == 1  # never re-sent: no duplicate runs


def test_real_pipeline_submits_with_typed_parameters(server, tmp_path):
    from kubeclr.config import load_config
    from kubeclr.pipelines.simclr import compile_pipeline

    package = tmp_path / "simclr.yaml"
    compile_pipeline(load_config("smoke"), str(package))
    client = kfp_client.connect(server.url)
    with pytest.raises(kfp_checks.KfpError, match="did you mean 'epochs'"):
        kfp_runs.submit(client, str(package), experiment="e", run_name="r", params={"epoch": 2})
    kfp_runs.submit(
        client,
        str(package),
        experiment="e",
        run_name="r",
        params={"epochs": "2", "lr": "0.3", "data_source": "sample"},
    )
    [run] = server.find("POST", f"{API}/runs")
    assert run.json["runtime_config"]["parameters"] == {"epochs": 2, "lr": 0.3, "data_source": "sample"}
    sent = run.json["pipeline_spec"]  # with a Kubernetes platform spec, kfp sends both documents
    assert sent["pipeline_spec"]["pipelineInfo"]["name"] == "simclr"
    assert "kubernetes" in sent["platform_spec"]["platforms"]
