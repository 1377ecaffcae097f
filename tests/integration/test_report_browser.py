"""The report in a real browser: headless Chromium decodes every image, logs no errors,
and the page fits a phone's width. Screenshots are kept under tests/artifacts/."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from kubeclr.config import Config
from kubeclr.evaluate.report import ReportInputs, build_metrics, render_html
from kubeclr.evaluate.tsne import tsne

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CLASSES = ["airplane", "auto<mobile>", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# Injected into a copy of the report: records load errors, console errors and every image's natural size.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error',
  e => window.__errors.push('error: ' + (e.message || (e.target && e.target.src) || e.type)), true);
const _ce = console.error;
console.error = (...a) => { window.__errors.push('console: ' + a.join(' ')); _ce(...a); };
window.addEventListener('load', () => {
  const imgs = Array.from(document.images).map(
    i => ({alt: i.alt, w: i.naturalWidth, h: i.naturalHeight, ok: i.complete}));
  const out = document.createElement('pre'); out.id = '__checks';
  out.textContent = JSON.stringify({imgs, errors: window.__errors,
    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth});
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path:
        return path
    reason = "chromium is not installed (make tools / apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def make_report() -> str:
    cfg = Config.from_dict({"model": {"width": 8}})
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(100) % 10
    points = tsne(torch.randn(10, 8, generator=gen)[labels] * 4 + torch.randn(100, 8, generator=gen),
                  iterations=300)
    conf = (torch.eye(10) * 8 + torch.randint(0, 3, (10, 10), generator=gen)).long().tolist()
    epochs = [{"epoch": e, "loss": 6.0 / e, "lr": 0.3 * min(e, 3) / 3, "images_per_second": 900.0 + 10 * e,
               "seconds": 3.0, "knn_top1": 0.1 * e} for e in range(1, 6)]
    summary = {"arch": "resnet18", "epochs": 5, "batch_size": 128, "final_loss": 1.2, "seconds": 15.0,
               "images_per_second": 950.0, "device": "cpu"}
    results = {"protocol": "features", "val_top1": 0.8, "val_top5": 0.99, "test_top1": 0.79, "test_top5": 0.98,
               "per_class": {c: 0.5 + 0.05 * i for i, c in enumerate(CLASSES)}, "confusion": conf,
               "class_names": CLASSES, "l2": 1e-4, "seconds": 2.0,
               "knn": {"test_top1": 0.75, "k": 200, "temperature": 0.1}}
    dataset = {"source": "https://example.invalid/cifar.tar.gz?a=<b>", "synthetic": True, "train_size": 1000,
               "val_size": 300, "test_size": 300, "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]}
    inputs = ReportInputs(run_name="<script>alert(1)</script> run", config=cfg.to_dict(), dataset=dataset,
                          history={"epochs": epochs, "summary": summary}, results=results,
                          timings={"download_split": 1.0, "pretrain": 15.0, "report": 0.5},
                          tsne=points.tolist(), tsne_labels=labels.tolist())
    return render_html(inputs, build_metrics(inputs))


def run_chromium(binary: str, tmp: Path, page: Path, size: str, *extra: str) -> str:
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp / 'profile'}", f"--window-size={size}", "--virtual-time-budget=5000",
           *extra, page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.parametrize("name,size", [("desktop", "1280,900"), ("phone", "390,844")])
def test_report_renders_in_chromium(tmp_path, name, size):
    binary = chromium()
    html = make_report()
    report = tmp_path / "report.html"
    report.write_text(html)
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("<head>", "<head>" + PROBE, 1))
    dom = run_chromium(binary, tmp_path, probed, size, "--dump-dom")
    match = re.search(r'<pre id="__checks">(.*?)</pre>', dom, re.S)
    assert match, "the probe did not run: " + dom[-500:]
    checks = json.loads(match.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                        .replace("&amp;", "&"))
    assert len(checks["imgs"]) >= 7                     # loss, lr, throughput, kNN, confusion, per-class, t-SNE
    for img in checks["imgs"]:
        assert img["ok"] and img["w"] > 0 and img["h"] > 0, img
    assert checks["errors"] == []
    assert checks["scrollWidth"] <= checks["innerWidth"] + 1, "page overflows horizontally"
    assert "alert(1)" in dom and "<script>alert(1)" not in dom   # the run name stayed text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"report-{name}.png"
    shot.unlink(missing_ok=True)
    run_chromium(binary, tmp_path, report, size.split(",")[0] + ",2400", f"--screenshot={shot}")
    assert shot.exists() and shot.stat().st_size > 10_000
