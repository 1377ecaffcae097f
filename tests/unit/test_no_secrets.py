"""No secret values anywhere in the repository.

Scans every file git would commit (tracked files plus untracked files that are
not ignored) for AWS access key ids, AWS secret keys assigned in text, private
key blocks, and Kubernetes Secret manifests whose values are not placeholders.
Each detector is also shown to fire on a planted example, so the scan can fail.
"""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

AWS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
AWS_SECRET = re.compile(r"(?i)aws_?secret_?access_?key['\"]?\s*[:=]\s*['\"]?([A-Za-z0-9/+]{40})\b")
PRIVATE_KEY = re.compile(r"-----BEGIN ([A-Z]+ )*PRIVATE KEY( BLOCK)?-----")
# What a Secret template may hold: a placeholder, never a value.
PLACEHOLDER = re.compile(r"^(|REPLACE_ME.*|<[^>]*>|\$\{[A-Z0-9_]+\})$")


def repo_files() -> list[Path]:
    """Files git would commit: tracked plus untracked-but-not-ignored."""
    names: set[str] = set()
    for extra in ([], ["--others", "--exclude-standard"]):
        out = subprocess.run(
            ["git", "ls-files", "-z", *extra], cwd=ROOT, capture_output=True, check=True, timeout=60
        ).stdout
        names.update(n for n in out.decode().split("\0") if n)
    return sorted(ROOT / n for n in names if (ROOT / n).is_file())


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None  # binary
    return data.decode("utf-8", errors="replace")


def secret_values(doc: dict) -> list[tuple[str, str]]:
    """(key, decoded value) pairs of a Secret manifest."""
    pairs = [(k, str(v)) for k, v in (doc.get("stringData") or {}).items()]
    for k, v in (doc.get("data") or {}).items():
        try:
            pairs.append((k, base64.b64decode(str(v), validate=True).decode("utf-8", "replace")))
        except ValueError:
            pairs.append((k, str(v)))
    return pairs


def scan(path: Path, text: str) -> list[str]:
    """Findings for one file, as 'path: what' lines."""
    found = [f"{path}: AWS access key id" for _ in AWS_KEY_ID.finditer(text)]
    found += [f"{path}: AWS secret access key" for _ in AWS_SECRET.finditer(text)]
    found += [f"{path}: private key block" for _ in PRIVATE_KEY.finditer(text)]
    if path.suffix in (".yaml", ".yml") and re.search(r"(?m)^kind:\s*Secret\s*$", text):
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError:
            docs = []
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == "Secret":
                found += [
                    f"{path}: Secret {doc.get('metadata', {}).get('name')} key {k} is not a placeholder"
                    for k, v in secret_values(doc)
                    if not PLACEHOLDER.match(v.strip())
                ]
    return found


@pytest.fixture(scope="module")
def files() -> list[Path]:
    return repo_files()


def test_scan_covers_the_repository(files):
    rel = {str(p.relative_to(ROOT)) for p in files}
    assert "pyproject.toml" in rel and "manifests/base/kubeclr-s3-credentials-secret.yaml" in rel
    assert not any(r.startswith(".venv/") or r.startswith(".git/") for r in rel)


def test_no_secret_values_in_the_repository(files):
    findings = []
    for path in files:
        text = _text(path)
        if text is not None:
            findings += scan(path.relative_to(ROOT), text)
    assert findings == []


def test_the_secret_template_is_placeholders_only():
    path = ROOT / "manifests" / "base" / "kubeclr-s3-credentials-secret.yaml"
    doc = yaml.safe_load(path.read_text())
    assert doc["kind"] == "Secret" and secret_values(doc)
    assert scan(path, path.read_text()) == []


# Planted examples, assembled at run time so this file itself stays clean.
_KEY_ID = "AKIA" + "Q" * 16
_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "b" * 18
_PEM = "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"


@pytest.mark.parametrize(
    "name, text, what",
    [
        ("env.sh", f"export AWS_ACCESS_KEY_ID={_KEY_ID}\n", "access key id"),
        ("cfg.ini", f"aws_secret_access_key = {_SECRET}\n", "secret access key"),
        ("id_rsa", _PEM, "private key"),
        (
            "s.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData:\n  AWS_SECRET_ACCESS_KEY: hunter2\n",
            "not a placeholder",
        ),
        (
            "d.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata:\n  password: "
            + base64.b64encode(b"hunter2").decode()
            + "\n",
            "not a placeholder",
        ),
    ],
)
def test_each_detector_fires_on_a_planted_secret(name, text, what):
    findings = scan(Path(name), text)
    assert findings and what in findings[0]


def test_placeholders_pass():
    text = (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData:\n"
        "  AWS_ACCESS_KEY_ID: REPLACE_ME\n  AWS_SECRET_ACCESS_KEY: <your-secret-key>\n"
    )
    assert scan(Path("t.yaml"), text) == []
