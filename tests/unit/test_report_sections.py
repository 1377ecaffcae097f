"""The report's step timings and its "Against earlier runs" wording, rendered by the real steps."""

import html
import re

import pytest
from report_fixtures import render_report

from kubeclr.atomic import read_json
from kubeclr.report.metrics import ReportInputs
from kubeclr.report.render import ALWAYS, TASKS, render_html, render_markdown


def _text(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", page)).split())


def _section(page: str, heading: str) -> str:
    return re.search(rf"<h2>{heading}</h2>(.*?)</section>", page, re.S).group(1)


def _rerender(tmp, metrics) -> tuple[str, str]:
    """report.html and report.md of ``metrics`` (the run's own inputs, its timings replaced)."""
    inp = ReportInputs(
        run_name=metrics["run_name"],
        config=metrics["config"],
        dataset=metrics["dataset"],
        history=read_json(tmp / "history.json"),
        results=read_json(tmp / "results.json"),
        timings=metrics["timings"],
    )
    return render_html(inp, metrics), render_markdown(inp, metrics)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("first")
    _, metrics = render_report(tmp)
    return tmp, metrics


def test_every_timed_task_is_in_the_table_in_dag_order(first_run):
    tmp, metrics = first_run
    timings = dict(metrics["timings"])
    # as a run record has them once every task's time is known: later tasks appended, not in DAG order
    record = {**metrics, "timings": {**timings, "regression_gate": 0.7, "resolve_config": 0.4, "export_model": 9.5}}
    page, md = _rerender(tmp, record)
    rows = re.findall(r"<tr><td>(.*?)</td><td class=num>([\d.]+)</td><td class=num>([\d.]+)%</td></tr>", page)
    order = [t for t in TASKS if t in record["timings"]]
    assert [re.sub("<wbr>", "", r[0]) for r in rows] == order
    assert [float(r[1]) for r in rows] == [round(record["timings"][t], 2) for t in order]
    assert abs(sum(float(r[2]) for r in rows) - 100) < 0.5
    md_rows = re.findall(r"^\| (\w+) \| ([\d.]+) \|$", md, re.M)
    assert [r[0] for r in md_rows] == order and ("export_model", "9.5") in md_rows
    assert "Not timed here" not in page + md


def test_tasks_the_report_could_not_time_are_named(first_run):
    tmp, metrics = first_run
    page, md = (tmp / "report.html").read_text(), (tmp / "report.md").read_text()
    note = "Not timed here: resolve_config, export_model, regression_gate"
    assert note in _text(_section(page, "Step timings")) and note in md
    assert set(metrics["timings"]) | {"resolve_config", "export_model", "regression_gate"} == set(ALWAYS)


def test_task_list_matches_the_pipeline():
    """TASKS: every task the single-run pipeline can have, each after the tasks it waits for."""
    from kubeclr.config import load_config
    from kubeclr.pipelines.simclr import CompileOptions, build_pipeline

    def tasks(cfg, opts):
        dag = build_pipeline(cfg, opts).pipeline_spec.root.dag.tasks
        return {name.replace("-", "_"): [d.replace("-", "_") for d in t.dependent_tasks] for name, t in dag.items()}

    full = tasks(load_config("fast", None, ["registry.url=http://registry:8080"]), CompileOptions(deploy=True))
    assert set(full) == set(TASKS)
    for name, deps in full.items():
        assert all(TASKS.index(d) < TASKS.index(name) for d in deps), name
    assert set(tasks(load_config("fast"), CompileOptions())) == set(ALWAYS)


def test_first_run_without_history_says_how_to_keep_one(first_run):
    tmp, _ = first_run
    page, md = (tmp / "report.html").read_text(), (tmp / "report.md").read_text()
    section = _text(_section(page, "Against earlier runs"))
    for text in (section, md):
        assert "No run history is configured" in text and "storage.history_uri" in text
        assert "--set storage.history_uri=s3://bucket/kubeclr/history" in text and "README" in text
        assert "run(s)" not in text and "no history" not in text
    assert "<code>storage.<wbr>history_<wbr>uri</code>" in page and "`storage.history_uri`" in md


def test_first_run_recorded_in_an_empty_history_says_so(tmp_path):
    render_report(tmp_path, history_runs=0)
    page, md = (tmp_path / "report.html").read_text(), (tmp_path / "report.md").read_text()
    where = (tmp_path / "history").as_uri()
    for text in (_text(_section(page, "Against earlier runs")), md):
        assert f"This is the first run of this series recorded in {where}" in text
        assert "No run history is configured" not in text and "run(s)" not in text
    assert len(list((tmp_path / "history").rglob("*.json"))) == 1  # and it was recorded there


def test_later_runs_count_the_earlier_ones(tmp_path):
    render_report(tmp_path, history_runs=1)
    section = _text(_section((tmp_path / "report.html").read_text(), "Against earlier runs"))
    assert f"1 earlier run of this series read from {(tmp_path / 'history').as_uri()}." in section


@pytest.mark.parametrize(
    "history,expected",
    [
        (
            {"uri": "s3://b/h", "runs_read": 3, "skipped": 1},
            "3 earlier runs of this series read from s3://b/h (1 unreadable",
        ),
        (
            {"uri": "s3://b/h", "runs_read": 0, "skipped": 2},
            "No readable earlier run of this series in s3://b/h (2 unread",
        ),
        ({"uri": "s3://b/h", "runs_read": 0, "skipped": 0, "error": "<denied>"}, "could not be read (&lt;denied&gt;)"),
        ({"uri": "s3://key:secret@b/h", "runs_read": 0, "skipped": 0}, "first run of this series recorded in s3://"),
    ],
)
def test_history_note_words_each_case(history, expected):
    from kubeclr.report.notebook import history_note
    from kubeclr.report.text import escape

    note = history_note({"history": history}, escape, lambda word: word)
    assert expected in note and "secret" not in note


def test_the_report_says_what_the_speed_depends_on_precision_and_compile_cost(first_run):
    tmp, metrics = first_run
    compiled = {
        **metrics,
        "pretrain": {
            **metrics["pretrain"],
            "precision": "bf16",
            "compile": {"compiled": True, "graphs": 1, "graph_breaks": 0, "recompiles": 0, "fallback": None},
            "compile_seconds": 51.4,
            "first_epoch_seconds": 52.3,
        },
    }
    page, md = _rerender(tmp, compiled)
    assert "bf16, compiled in 51 s (first epoch 52 s)" in _text(_section(page, "Pretraining"))
    assert "bf16, compiled in 51 s (first epoch 52 s)." in md
    eager = {
        **compiled,
        "pretrain": {**compiled["pretrain"], "compile": {"compiled": False, "fallback": "no C compiler"}},
    }
    page, md = _rerender(tmp, eager)
    assert "eager: no C compiler" in _text(_section(page, "Pretraining")) and "compiled in" not in md


def test_the_l2_chart_marks_the_strength_the_run_chose(first_run):
    """The real steps: linear_eval's choice, in metrics.json and marked on the report's L2 chart."""
    from kubeclr.report.charts import fmt

    tmp, metrics = first_run
    lin, results = metrics["linear_eval"], read_json(tmp / "results.json")
    assert lin["l2"] == results["l2"] and lin["l2_sweep"] == results["l2_sweep"]
    assert isinstance(lin["l2_at_bound"], bool) and lin["l2_at_bound"] == results["l2_at_bound"]
    assert lin["l2"] in [p["l2"] for p in lin["l2_sweep"]]
    page = (tmp / "report.html").read_text()
    alts = [
        html.unescape(a) for a in re.findall(r'alt="([^"]*)"', _section(page, "Linear evaluation \\(test split\\)"))
    ]
    bound = ", at the sweep's bound: the optimum may lie beyond" if lin["l2_at_bound"] else ""
    assert f"Validation accuracy of the linear probe per L2 strength, chosen L2 = {fmt(lin['l2'])}{bound}" in alts
