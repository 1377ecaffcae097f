"""Patches to ``kfp.local`` (kfp 2.17, the range pyproject pins), each naming the upstream behaviour it works around.

- :func:`install_raw_streaming`: kfp.local reads a step's output line by line in text mode, which
  turns every carriage return of a progress bar into a new line, and prints the executor's
  ``Got executor_input:`` JSON dump (~70 lines) for every task. Output is streamed as bytes
  instead, less that dump, and a step killed by a signal is remembered (:data:`KILLED_BY`).
- :func:`install_loop_inputs_fix`: kfp.local hands a ParallelFor body the loop item in place of
  *every* parameter it takes from another task's output.
- :func:`install_typed_output_log`: kfp.local logs a config struct as it crosses tasks (a protobuf
  Struct: every number a double, ``epochs: 6.0``); it is logged in the schema's types.

Each patch is installed once per process and checked by tests against the installed kfp.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys

from kubeclr.config import Config
from kubeclr.errors import UserError


def install() -> None:
    """Install every patch (idempotent)."""
    install_raw_streaming()
    install_loop_inputs_fix()
    install_typed_output_log()


class ExecutorInputFilter:
    """Drops the KFP executor's ``Got executor_input:`` JSON dump (~70 lines per step) from a step's output.

    Everything else passes through as it arrives, carriage returns included, so a
    progress bar still redraws in place. Only a line that could still turn out to
    be the dump's first line is held back until its end is seen.
    """

    MARKER = b"Got executor_input:"
    PREFIX = b"[KFP Executor"

    def __init__(self) -> None:
        self._pending = b""  # start of a line that may be the marker line
        self._mid_line = False  # inside a line already passed through
        self._skipping = False  # inside the JSON dump

    def feed(self, chunk: bytes) -> bytes:
        out = []
        data = self._pending + chunk
        self._pending = b""
        while data:
            end = data.find(b"\n")
            line, rest = (data, b"") if end < 0 else (data[: end + 1], data[end + 1 :])
            complete = end >= 0
            if self._skipping:
                if not complete:
                    self._pending = line  # its end decides whether the dump ends here
                elif line.rstrip(b"\r\n") == b"}":
                    self._skipping = False
            elif self._mid_line:
                out.append(line)
                self._mid_line = not complete
            elif complete:
                if line.startswith(self.PREFIX) and self.MARKER in line:
                    self._skipping = True
                else:
                    out.append(line)
            elif self.PREFIX.startswith(line[: len(self.PREFIX)]):
                self._pending = line  # may be the marker line: wait for its end
            else:
                out.append(line)
                self._mid_line = True
            data = rest
        return b"".join(out)

    def flush(self) -> bytes:
        pending, self._pending = self._pending, b""
        return b"" if self._skipping else pending


def stream_raw_subprocess(full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
    """Like kfp.local's runner, but passes bytes through unchanged (less the executor-input dump).

    kfp.local reads step output line by line in text mode, which turns every
    carriage return of a progress bar into a new line; copying raw bytes keeps
    the pretraining bar a bar.
    """
    env = {**os.environ, **(env_vars or {})}
    quiet = ExecutorInputFilter()
    with subprocess.Popen(full_command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env) as proc:
        assert proc.stdout is not None
        out = sys.stdout.buffer
        while chunk := proc.stdout.read1(4096):
            out.write(quiet.feed(chunk))
            out.flush()
        out.write(quiet.flush())
        out.flush()
        rc = proc.wait()
    if rc < 0:  # killed by a signal: no error line can have been written; remember which signal
        KILLED_BY.append(-rc)
    return rc


KILLED_BY: list[int] = []  # signals that ended step processes of this local run, in order


def install_raw_streaming() -> None:
    from kfp.local import subprocess_task_handler

    if hasattr(subprocess_task_handler, "run_local_subprocess"):
        subprocess_task_handler.run_local_subprocess = stream_raw_subprocess


def install_loop_inputs_fix() -> None:
    """Keep a ParallelFor body's inputs from upstream tasks' outputs as they are (kfp.local 2.17).

    kfp.local replaces *every* parameter that a loop's body takes from another task's output with
    the loop item, so the trials would receive ``{"index", "overrides"}`` as their config. The
    sweep's items are a constant list, never a task's output, so no such input is the loop item:
    restore them all. A cluster's KFP backend has no such problem.
    """
    from kfp.local.orchestrator import task_spec_utils

    original = task_spec_utils.create_parameter_loop_iteration_task_spec
    if getattr(original, "kubeclr_fixed", False):
        return

    def create(task_spec, loop_item, loop_task_name):
        iteration = original(task_spec, loop_item, loop_task_name)
        if task_spec.parameter_iterator.items.HasField("raw"):
            for name, given in task_spec.inputs.parameters.items():
                if given.HasField("task_output_parameter"):
                    iteration.inputs.parameters[name].CopyFrom(given)
        return iteration

    create.kubeclr_fixed = True
    task_spec_utils.create_parameter_loop_iteration_task_spec = create


def typed_outputs(outputs: dict) -> dict:
    """A task's outputs as kfp.local logs them, with a resolved config shown in the schema's types.

    The config crosses tasks as a protobuf Struct, where every number is a
    double: logged as it arrives it reads ``epochs: 6.0``. Steps re-type it
    when they parse it (:meth:`Config.from_dict`); the log does the same.
    """
    sections = {f.name for f in dataclasses.fields(Config)}
    typed = {}
    for name, value in outputs.items():
        if isinstance(value, dict) and value and set(value) <= sections:
            with contextlib.suppress(UserError):  # not a whole config: log it as it is
                value = Config.from_dict(value, partial=True).to_dict()
        typed[name] = value
    return typed


def install_typed_output_log() -> None:
    from kfp.local import logging_utils

    original = logging_utils.make_log_lines_for_outputs
    if getattr(original, "kubeclr_typed", False):
        return

    def make_lines(outputs: dict) -> list[str]:
        return original(typed_outputs(outputs))

    make_lines.kubeclr_typed = True
    logging_utils.make_log_lines_for_outputs = make_lines
