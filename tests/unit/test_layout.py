"""The layout that shows the architecture: every component in one module, one step module per task, thin
components, docs that exist in the repo."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from kubeclr.config.docs import render

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "kubeclr"
COMPONENTS = ROOT / "components" / "__init__.py"


def _imports(node: ast.AST) -> set[str]:
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            names |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module:
            names.add(n.module)
    return names


def _component_functions() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(COMPONENTS.read_text())
    return {
        n.name: n
        for n in tree.body
        if isinstance(n, ast.FunctionDef)
        and any(isinstance(d, ast.Call) and getattr(d.func, "id", "") == "task" for d in n.decorator_list)
    }


def test_every_task_is_a_component_and_a_step_module():
    """One module holds every component; each has its step module (no list to keep in sync by hand)."""
    from kubeclr.components import TASKS

    steps = {p.stem for p in (SRC / "steps").glob("*.py")} - {"__init__", "runtime"}
    assert set(TASKS) == steps
    assert set(_component_functions()) == steps - {"resolve_config"}  # that one is generated from UI_PARAMS
    assert not [p.name for p in (ROOT / "components").glob("*.py") if p.name != "__init__.py"]


@pytest.mark.parametrize("step", sorted(_component_functions()))
def test_a_component_is_a_signature_a_docstring_and_one_call(step):
    fn = _component_functions()[step]
    doc = ast.get_docstring(fn) or ""
    for arg in fn.args.args:  # every parameter documented
        assert re.search(rf"^\s+{arg.arg}: ", doc, re.M), (step, arg.arg)
    assert _imports(fn) == {"kubeclr.steps"}  # the body imports the library, nothing else
    calls = [n for n in ast.walk(fn) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "run_step"]
    assert len(calls) == 1, step


def test_the_generated_component_reads_like_the_others():
    """resolve_config's source (embedded in the IR) documents every parameter and makes one call."""
    import inspect

    from kubeclr.components import TASKS
    from kubeclr.config import UI_PARAMS

    fn = ast.parse(inspect.getsource(TASKS["resolve_config"])).body[0]
    assert [a.arg for a in fn.args.args] == ["config", *(p.name for p in UI_PARAMS)]
    doc = ast.get_docstring(fn) or ""
    for arg in fn.args.args:
        assert re.search(rf"^\s+{arg.arg}: ", doc, re.M), arg.arg
    calls = [n for n in ast.walk(fn) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "run_task"]
    assert len(calls) == 1


def test_the_config_reference_is_current():
    assert (ROOT / "docs" / "config.md").read_text() == render(), "run: python -m kubeclr.config.docs"


def test_docs_and_docstrings_link_only_to_files_in_the_repo():
    texts = [
        ROOT / "README.md",
        ROOT / "benchmarks" / "README.md",
        *ROOT.glob("docs/*.md"),
        *SRC.rglob("*.py"),
        COMPONENTS,
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
