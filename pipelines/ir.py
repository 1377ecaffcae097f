"""The compiled IR file, with the integer defaults written as integers.

KFP stores a parameter's default as a ``google.protobuf.Value``, whose only number is a double, so
its compiler writes ``epochs: int [Default: 200.0]`` and every integer key of the ``config``
struct as ``64.0``. The file is rewritten here with each default typed like the Python value it
was compiled from (``200``, ``64``; a float stays a float). The KFP backend reads either spelling
as the same number: nothing changes but what a person reviewing the file sees.
"""

import inspect
from pathlib import Path
from typing import Any

import yaml
from kfp import compiler
from kfp.compiler.pipeline_spec_builder import extract_comments_from_pipeline_spec


def typed_like(value: Any, compiled_from: Any) -> Any:
    """``value`` as read back from the IR (every number a float), with the integers of ``compiled_from``."""
    if isinstance(compiled_from, int) and not isinstance(compiled_from, bool):
        return compiled_from if value == compiled_from else value
    if isinstance(value, dict) and isinstance(compiled_from, dict):
        return {k: typed_like(v, compiled_from.get(k)) for k, v in value.items()}
    if isinstance(value, list) and isinstance(compiled_from, (list, tuple)) and len(value) == len(compiled_from):
        return [typed_like(v, c) for v, c in zip(value, compiled_from)]
    return value


def write_ir(pipeline: Any, path: Path) -> None:
    """Compile ``pipeline`` (a ``@dsl.pipeline``) to ``path``, its parameters' integer defaults as integers."""
    compiler.Compiler().compile(pipeline, package_path=str(path))
    docs = list(yaml.safe_load_all(path.read_text()))
    spec = docs[0]
    defaults = {name: p.default for name, p in inspect.signature(pipeline.pipeline_func).parameters.items()}
    for name, param in spec["root"].get("inputDefinitions", {}).get("parameters", {}).items():
        if "defaultValue" in param:
            param["defaultValue"] = typed_like(param["defaultValue"], defaults.get(name))
    # the header KFP writes above the YAML, made again from the corrected defaults
    header = extract_comments_from_pipeline_spec(spec, spec["pipelineInfo"].get("description", ""))
    with path.open("w") as f:
        f.write(header)
        yaml.dump_all(docs, f, sort_keys=True)  # as KFP's compiler dumps them
