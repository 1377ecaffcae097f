"""The evaluation steps end to end on tiny files, the report's content and escaping, metrics.json."""

import base64
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from report_fixtures import CLASSES, RUN, make_inputs, render_report

from kubeclr.atomic import read_json
from kubeclr.core.model import build_encoder
from kubeclr.report.metrics import validate_metrics
from kubeclr.report.render import CSP
from kubeclr.steps import extract_features as extract_step
from kubeclr.steps import linear_eval as linear_step
from kubeclr.steps import report as report_step


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    results, metrics = render_report(tmp)
    return tmp, results, metrics


def embedded_svgs(page):
    imgs = re.findall(
        r'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)" '
        r'width="(\d+)" height="(\d+)">',
        page,
    )
    return [(ET.fromstring(base64.b64decode(data)), alt, int(w), int(h)) for data, alt, w, h in imgs]


def test_linear_eval_step_writes_results_with_knn_and_a_safe_classifier(report_dir):
    tmp, results, _ = report_dir
    assert read_json(tmp / "results.json") == json.loads(json.dumps(results))
    assert results["test_top1"] == 1.0 and results["knn"]["test_top1"] == 1.0 and results["knn"]["k"] == 5
    assert results["class_names"] == list(CLASSES)
    clf = torch.load(tmp / "classifier.pt", weights_only=True)
    assert clf["weight"].shape == (4, 16) and clf["mean"].shape == (16,) and clf["class_names"] == list(CLASSES)


def test_report_embeds_the_plots_as_decodable_svg_images(report_dir):
    tmp, _, _ = report_dir
    page = (tmp / "report.html").read_text()
    svgs = embedded_svgs(page)
    alts = [alt for _, alt, _, _ in svgs]
    for needle in ("loss", "Confusion matrix", "t-SNE", "Per-class", "throughput"):
        assert any(needle in a for a in alts), needle
    ns = "{http://www.w3.org/2000/svg}"
    for root, _, w, h in svgs:
        assert root.tag == ns + "svg" and int(root.get("width")) == w > 0 and int(root.get("height")) == h > 0
    tsne_svg = next(root for root, alt, _, _ in svgs if "t-SNE" in alt)
    assert len(tsne_svg.findall(f".//{ns}circle")) >= 40  # 40 points (+ legend)
    heat = next(root for root, alt, _, _ in svgs if "Confusion" in alt)
    assert "a<b & c" in [t.text for t in heat.iter(ns + "text")]  # class name escaped, so it parses back intact
    # self-contained: nothing fetched from the network
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', page)
    assert '<meta name="viewport"' in page and CSP in page


def test_report_escapes_user_strings(report_dir):
    tmp, _, _ = report_dir
    page = (tmp / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a<b" not in page
    assert "SYNTHETIC" in page
    md = (tmp / "report.md").read_text()
    assert "<script>" not in md and "SYNTHETIC" in md and "100.00%" in md


def test_metrics_json_validates_and_matches_inputs(report_dir):
    tmp, results, metrics = report_dir
    on_disk = read_json(tmp / "metrics.json")
    validate_metrics(on_disk)
    assert on_disk["run_name"] == RUN
    assert on_disk["dataset"]["train_size"] == 40 and on_disk["dataset"]["synthetic"] is True
    assert on_disk["linear_eval"]["test_top1"] == results["test_top1"]
    assert on_disk["knn"]["test_top1"] == results["knn"]["test_top1"]
    assert set(on_disk["timings"]) == {
        "download_split",
        "compute_stats",
        "pretrain",
        "extract_features",
        "linear_eval",
        "report",
    }


@pytest.mark.parametrize(
    "path,value,message",
    [
        (("dataset", "train_size"), None, "missing key 'dataset.train_size'"),
        (("linear_eval", "test_top1"), 1.5, "'linear_eval.test_top1' must be a fraction"),
        (("dataset", "synthetic"), "no", "'dataset.synthetic' must be a boolean"),
        (("pretrain", "epochs"), True, "'pretrain.epochs' must be a non-negative integer"),
        (("dataset", "mean"), [0.1, 0.2], "'dataset.mean' must be a list of 3"),
    ],
)
def test_validate_metrics_names_the_bad_key(report_dir, path, value, message):
    bad = json.loads(json.dumps(report_dir[2]))
    if value is None:
        del bad[path[0]][path[1]]
    else:
        bad[path[0]][path[1]] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_metrics(bad)


def test_extract_features_step_roundtrip(tmp_path):
    cfg, p = make_inputs(tmp_path)
    encoder = build_encoder(cfg.model)
    torch.save(encoder.state_dict(), tmp_path / "encoder.pt")
    out = extract_step.run(
        cfg, tmp_path / "encoder.pt", p["stats"], p["train"], p["val"], p["test"], tmp_path / "feats.npz"
    )
    assert out["feature_dim"] == encoder.feature_dim and out["test_size"] == 40
    with np.load(tmp_path / "feats.npz", allow_pickle=False) as npz:
        assert npz["train_x"].shape == (40, encoder.feature_dim) and npz["train_x"].dtype == np.float32
        assert npz["test_y"].dtype == np.int64 and json.loads(str(npz["meta"]))["device"].startswith("cpu: ")


def test_wrong_encoder_file_is_a_clear_user_error(tmp_path):
    from kubeclr.errors import DataError

    cfg, p = make_inputs(tmp_path)
    torch.save(build_encoder(cfg.override({"model.width": 8}).model).state_dict(), tmp_path / "encoder.pt")
    with pytest.raises(DataError, match=r"encoder .*encoder.pt: does not match model.arch=resnet18 width=4"):
        extract_step.run(
            cfg, tmp_path / "encoder.pt", p["stats"], p["train"], p["val"], p["test"], tmp_path / "feats.npz"
        )
    assert not (tmp_path / "feats.npz").exists()


def test_linear_eval_step_crops_protocol(tmp_path):
    from kubeclr.errors import ConfigError

    cfg, p = make_inputs(tmp_path)
    cfg = cfg.override({"eval.protocol": "crops", "eval.crops_epochs": 1, "eval.batch_size": 20})
    torch.save(build_encoder(cfg.model).state_dict(), tmp_path / "encoder.pt")
    with pytest.raises(ConfigError, match="eval.protocol=crops needs"):
        linear_step.run(cfg, p["features"], tmp_path / "r.json", tmp_path / "c.pt")
    results = linear_step.run(
        cfg,
        p["features"],
        tmp_path / "r.json",
        tmp_path / "c.pt",
        encoder_path=tmp_path / "encoder.pt",
        stats_path=p["stats"],
        train_path=p["train"],
        val_path=p["val"],
        test_path=p["test"],
    )
    assert results["protocol"] == "crops" and results["l2"] is None and 0 <= results["test_top1"] <= 1
    assert np.asarray(results["confusion"]).sum() == 40 and results["knn"]["test_top1"] == 1.0
    assert torch.load(tmp_path / "c.pt", weights_only=True)["weight"].shape == (4, 8 * 4)


def test_markdown_escaping_keeps_apostrophes_readable():
    from kubeclr.report.render import md_escape

    assert md_escape("bob's run #1") == "bob's run #1"  # a '#' inside a line is no heading
    assert md_escape("# bob's run") == "\\# bob's run"
    assert md_escape("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert(1)>"


def test_run_page_artifacts_carry_the_results(report_dir):
    """What the Kubeflow run page shows: scalars on Metrics, the labelled matrix on ClassificationMetrics."""
    from kfp import dsl

    tmp, _, summary = report_dir
    cfg, p = make_inputs(tmp / "again")
    metrics = dsl.Metrics(name="metrics", uri=str(tmp / "m"), metadata={})
    confusion = dsl.ClassificationMetrics(name="confusion", uri=str(tmp / "c"), metadata={})
    results = linear_step.run(
        cfg, p["features"], tmp / "again" / "r.json", tmp / "again" / "c.pt", metrics=metrics, confusion=confusion
    )
    assert metrics.metadata == {
        "val_top1": results["val_top1"],
        "val_top5": results["val_top5"],
        "test_top1": results["test_top1"],
        "test_top5": results["test_top5"],
        "seconds": results["seconds"],
        "knn_test_top1": results["knn"]["test_top1"],
    }
    matrix = confusion.metadata["confusionMatrix"]
    assert [spec["displayName"] for spec in matrix["annotationSpecs"]] == list(CLASSES)
    assert [row["row"] for row in matrix["rows"]] == results["confusion"]

    headline = dsl.Metrics(name="metrics", uri=str(tmp / "h"), metadata={})
    report_step.log_run_page(summary, headline)
    assert headline.metadata == {
        "linear_test_top1": summary["linear_eval"]["test_top1"],
        "linear_test_top5": summary["linear_eval"]["test_top5"],
        "knn_test_top1": summary["knn"]["test_top1"],
        "pretrain_final_loss": summary["pretrain"]["final_loss"],
        "pretrain_images_per_second": summary["pretrain"]["images_per_second"],
        "pretrain_seconds": summary["pretrain"]["seconds"],
        "gate_status": -1.0,  # not armed: no storage.history_uri
    }


def test_chart_ticks_are_whole_epochs_and_labels_distinct():
    from kubeclr.report.charts import nice_ticks, tick_labels

    assert nice_ticks(1, 3, count=6, integer=True) == [1, 2, 3]
    assert all(float(t).is_integer() for t in nice_ticks(1, 100, count=6, integer=True))
    assert nice_ticks(1, 3, count=6) == [1.0, 1.5, 2.0, 2.5, 3.0]  # without it, half epochs
    ticks = nice_ticks(101.0, 103.0)  # 101, 101.5, … : '102' twice at 3 digits
    labels = tick_labels(ticks)
    assert len(set(labels)) == len(labels) and labels[1] == "101.5"
    assert tick_labels([0.0001, 0.0002, 0.0003]) == ["1e-04", "2e-04", "3e-04"]
    assert len(set(tick_labels([0.0011, 0.0012, 0.0013]))) == 3


def test_report_warns_when_pretraining_did_not_learn(tmp_path):
    from kubeclr.core.health import training_health

    health = training_health([3.43, 3.43, 3.43], epochs=3, batch_size=16, peak_lr=1e-6, lr_scaling="none")
    assert health["status"] == "not-learning"
    _, metrics = render_report(tmp_path, run_name="stuck", health=health)
    assert metrics["pretrain"]["health"]["status"] == "not-learning"
    assert read_json(tmp_path / "metrics.json")["pretrain"]["health"] == health
    page = (tmp_path / "report.html").read_text()
    assert page.count('class="warn"') == 1 and "not learning" in page and "peak lr 1e-06" in page
    assert page.index('class="warn"') < page.index('class="kpis')  # on the first screen, above the numbers
    assert "**Warning**: not learning" in (tmp_path / "report.md").read_text()


def _below_init_health():
    from kubeclr.core.health import against_init, training_health

    loss = training_health([4.0, 3.0, 2.0], epochs=3, batch_size=16, peak_lr=0.3, lr_scaling="none")
    return against_init(loss, knn_init=0.7, knn_final=0.6, causes=["weak colour distortion"])


@pytest.mark.parametrize("action", ["fail", "warn"])
def test_a_run_below_its_random_init_is_flagged_and_fails_the_gate(tmp_path, action):
    """The fixture's kNN monitor ends at 60%; its encoder scored 70% before the first step."""
    from kfp import dsl

    from kubeclr.report.canary import GateFailed
    from kubeclr.steps import regression_gate

    health = _below_init_health()
    assert health["status"] == "below-random-init"
    _, metrics = render_report(tmp_path, health=health, knn_init=0.7, overrides={"gate.action": action})
    assert metrics["pretrain"]["knn_top1_init"] == 0.7
    page = (tmp_path / "report.html").read_text()
    # first screen: the health warning and the gate's verdict, both above the numbers
    assert page.count('class="warn"') == 1 + (action == "warn") and "below random init" in page
    assert page.index("below random init") < page.index('class="kpis')
    gate = metrics["gate"]
    assert gate["runs_compared"] == 0 and gate["health"]["verdict"] == "fail"  # no history needed
    assert gate["status"] == action
    assert f"<b>Regression gate: {action}</b>" in page and "pretrain below-random-init" in page
    assert page.index("Regression gate:") < page.index('class="kpis')
    assert "**Warning**: below random init" in (tmp_path / "report.md").read_text()
    # the Pretraining table: the baseline and where the run ended
    assert "kNN monitor top-1, epoch 0 (before training)</td><td>70.00%" in page
    assert "kNN monitor top-1, last epoch</td><td>60.00%" in page
    # the kNN curve starts at epoch 0, with the baseline drawn flat
    (svg,) = [svg for svg, alt, _, _ in embedded_svgs(page) if alt.startswith("kNN monitor")]
    ns = "{http://www.w3.org/2000/svg}"
    assert len(svg.findall(f".//{ns}circle")) == 2 * 4  # epochs 0..3, two series
    assert "epoch 0 (before training)" in [t.text for t in svg.iter(f"{ns}text")]
    headline = dsl.Metrics(name="metrics", uri=str(tmp_path / "h"), metadata={})
    report_step.log_run_page(metrics, headline)
    assert headline.metadata["pretrain_health_status"] == 3.0 and headline.metadata["pretrain_knn_top1_init"] == 0.7
    if action == "fail":
        with pytest.raises(GateFailed, match="gate FAILED: pretrain below-random-init: kNN top-1 0.6 <= 0.7"):
            regression_gate.run(None, tmp_path / "metrics.json")
    else:
        assert regression_gate.run(None, tmp_path / "metrics.json")["status"] == "warn"


def test_healthy_report_has_no_warning(report_dir):
    tmp, _, _ = report_dir
    assert 'class="warn"' not in (tmp / "report.html").read_text()
    assert "Warning" not in (tmp / "report.md").read_text()


def test_charts_of_a_hundred_classes_stay_inside_their_svg():
    """CIFAR-100: the t-SNE legend is cut to what fits, with a count of the rest; every class is still drawn."""
    import re

    from kubeclr.report.charts import LEGEND_ROWS, heatmap, scatter

    names = [f"class{i:02d}" for i in range(100)]
    svg = scatter([[i, i % 7] for i in range(300)], [i % 100 for i in range(300)], names, title="t-SNE")
    height = float(re.search(r'viewBox="0 0 [\d.]+ ([\d.]+)"', svg).group(1))
    ys = [float(y) for y in re.findall(r'<text x="[\d.]+" y="([\d.]+)"', svg)]
    assert max(ys) < height
    assert f"… {100 - (LEGEND_ROWS - 1)} more classes" in svg and svg.count("<circle") == 300 + LEGEND_ROWS - 1
    matrix = [[int(i == j) for j in range(100)] for i in range(100)]
    assert heatmap(matrix, names, title="confusion").count("<rect") == 100 * 100 + 1  # + the background


def test_long_values_wrap_at_separators_not_inside_words_or_numbers():
    from kubeclr.report.text import breakable

    assert breakable("storage.checkpoint_uri") == "storage.<wbr>checkpoint_<wbr>uri"
    assert breakable("median 0.91 - 0.02") == "median 0.91 - 0.02"
    assert breakable("a" * 40) == "a" * 16 + "<wbr>" + "a" * 16 + "<wbr>" + "a" * 8
    assert breakable("<b>x&y</b>") == "&lt;b&gt;x&amp;y&lt;/<wbr>b&gt;"  # still escaped, entities whole
