"""The layout that shows the architecture: one component and one step module per step, thin components,
small modules, docs that exist in the repo."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from kubeclr.config.docs import render
from kubeclr.steps import TASKS

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "kubeclr"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_one_component_module_and_one_step_module_per_step():
    components = {p.stem for p in (ROOT / "components").glob("*.py")} - {"__init__"}
    steps = {p.stem for p in (SRC / "steps").glob("*.py")} - {"__init__", "runtime"}
    assert components == steps == set(TASKS)


@pytest.mark.parametrize("step", TASKS)
def test_a_component_is_a_signature_a_docstring_and_one_call(step):
    path = ROOT / "components" / f"{step}.py"
    tree = ast.parse(path.read_text())
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert [f.name for f in functions] == [step]
    (fn,) = functions
    doc = ast.get_docstring(fn) or ""
    for arg in fn.args.args:  # every parameter documented
        assert re.search(rf"^\s+{arg.arg}: ", doc, re.M), (step, arg.arg)
    assert _imports(path) <= {"kfp.dsl", "kubeclr.steps", "typing"}  # typing: NamedTuple / List outputs and inputs
    runner = "run_task" if step == "fingerprint" else "run_step"  # the one task before the config is resolved
    calls = [n for n in ast.walk(fn) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == runner]
    assert len(calls) == 1, step


def test_the_config_reference_is_current():
    assert (ROOT / "docs" / "config.md").read_text() == render(), "run: python -m kubeclr.config.docs"


def test_docs_and_docstrings_link_only_to_files_in_the_repo():
    texts = [
        ROOT / "README.md",
        ROOT / "benchmarks" / "README.md",
        *ROOT.glob("docs/*.md"),
        *SRC.rglob("*.py"),
        *(ROOT / "components").glob("*.py"),
        *(ROOT / "pipelines").glob("*.py"),
    ]
    for path in texts:
        text = path.read_text()
        assert "DESIGN.md" not in text and "../shared" not in text and "REFERENCES.md" not in text, path
    for doc in [ROOT / "README.md", *ROOT.glob("docs/*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):  # relative Markdown links
            assert (doc.parent / target).exists(), (doc.name, target)


def test_the_cli_starts_without_torch_or_kfp():
    """`simclr-pipeline --help` and `keys` answer at once: the heavy imports wait for the commands that need them."""
    import subprocess
    import sys

    code = "import sys, kubeclr.cli; print(sorted(m for m in ('torch', 'kfp', 'boto3') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
