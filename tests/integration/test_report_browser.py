"""The report the steps render, in a real browser: headless Chromium decodes every image,
logs nothing to the console, lays the page out within a phone's width, and its
Content-Security-Policy stops any script. Screenshots are kept under tests/artifacts/."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from report_fixtures import RUN, render_report

from kubeclr.report.render import CSP

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

# Injected into a copy of the report (whose CSP is relaxed for this one script): records load
# errors and every image's natural size, and posts them to the page that frames the report.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error',
  e => window.__errors.push('error: ' + (e.message || (e.target && e.target.src) || e.type)), true);
window.addEventListener('load', () => {
  const imgs = Array.from(document.images).map(
    i => ({alt: i.alt, w: i.naturalWidth, h: i.naturalHeight, ok: i.complete}));
  parent.postMessage(JSON.stringify({imgs, errors: window.__errors,
    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth}), '*');
});
</script>"""

# Headless Chromium lays out --dump-dom pages at least 500 px wide whatever --window-size says,
# so the report is measured inside an iframe of the exact width; the probe posts its checks here.
FRAME = """<!DOCTYPE html><html><body style="margin:0">
<pre id="__checks"></pre>
<iframe src="probed.html" style="border:0;width:{w}px;height:{h}px"></iframe>
<script>
window.addEventListener('message', e => {{ document.getElementById('__checks').textContent = e.data; }});
</script></body></html>"""

SIZES = {"desktop": (1280, 900), "phone": (390, 844)}


def chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path:
        return path
    reason = "chromium is not installed (make tools / apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def run_chromium(binary: str, tmp: Path, page: Path, size: tuple[int, int], *extra: str) -> tuple[str, list[str]]:
    """(stdout, console messages) of headless Chromium on ``page``."""
    cmd = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--enable-logging=stderr",
        "--v=0",  # console messages of the page go to stderr
        f"--user-data-dir={tmp / 'profile'}",
        f"--window-size={size[0]},{size[1]}",
        "--virtual-time-budget=5000",
        *extra,
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """report.html as the ``linear_eval`` and ``report`` steps render it (hostile run and class names)."""
    tmp = tmp_path_factory.mktemp("rendered")
    render_report(tmp, history_runs=3)  # the gate armed: its banner, its table and the trend charts
    return tmp / "report.html"


@pytest.mark.parametrize("name", list(SIZES))
def test_report_renders_in_chromium(tmp_path, report, name):
    binary, (width, height) = chromium(), SIZES[name]
    html = report.read_text()
    assert html.count(CSP) == 1
    probed = html.replace(CSP, CSP.replace("default-src 'none'", "default-src 'none'; script-src 'unsafe-inline'"))
    (tmp_path / "probed.html").write_text(probed.replace("<head>", "<head>" + PROBE, 1))
    frame = tmp_path / "frame.html"
    frame.write_text(FRAME.format(w=width, h=height))
    dom, console = run_chromium(binary, tmp_path, frame, (width + 40, height + 100), "--dump-dom")
    match = re.search(r'<pre id="__checks">(.+?)</pre>', dom, re.S)
    assert match, "the probe did not report: " + dom[-500:]
    checks = json.loads(
        match.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    )
    assert checks["innerWidth"] == width
    # loss per step and per epoch, lr, throughput, kNN, confusion, per-class, L2 sweep, t-SNE, the
    # augmented views, and four trends over the run history
    assert len(checks["imgs"]) == 14, [i["alt"] for i in checks["imgs"]]
    for img in checks["imgs"]:
        assert img["ok"] and img["w"] > 0 and img["h"] > 0, img
    assert checks["errors"] == [] and console == []
    assert checks["scrollWidth"] <= width, f"the page is {checks['scrollWidth']} px wide in a {width} px viewport"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"report-{name}.png"
    shot.unlink(missing_ok=True)
    _, console = run_chromium(
        binary, tmp_path, report, (width, 2400), f"--screenshot={shot}", "--hide-scrollbars"
    )  # as phones overlay them
    assert shot.exists() and shot.stat().st_size > 10_000
    assert console == []  # the report as shipped: no CSP violation, no error


def test_content_security_policy_stops_scripts(tmp_path, report):
    """Were escaping ever to miss a string, an injected script still would not run."""
    injected = tmp_path / "injected.html"
    injected.write_text(
        report.read_text().replace(
            "</main>",
            "<script>document.title = 'pwned'; console.log('script ran')</script>"
            '<img src="https://example.invalid/beacon.png"></main>',
            1,
        )
    )
    dom, console = run_chromium(chromium(), tmp_path, injected, (1280, 900), "--dump-dom")
    assert "<title>SimCLR report: " + RUN.replace("<", "&lt;").replace(">", "&gt;") in dom
    assert not any("script ran" in line for line in console)
    assert any("Content Security Policy" in line for line in console), console
