"""What the process knows about its CPUs: the model a record names, and how many CPUs pools may use."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from kubeclr import cpus


@pytest.fixture
def on_a_64_core_node(monkeypatch):
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: set(range(64)))


def test_usable_cpus_follow_a_cgroup_v2_cpu_limit(tmp_path, monkeypatch, on_a_64_core_node):
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(cpus, "CPU_QUOTA_FILES", ((str(cpu_max), str(cpu_max)),))
    cpu_max.write_text("250000 100000\n")  # 2.5 CPUs: a pool of 3 keeps them busy
    assert cpus.usable_cpus() == 3
    cpu_max.write_text("max 100000\n")
    assert cpus.usable_cpus() == 64
    cpu_max.write_text("200000 0\n")  # a zero period is no limit, not a crash
    assert cpus.usable_cpus() == 64


def test_usable_cpus_follow_a_cgroup_v1_quota_and_skip_what_they_cannot_read(tmp_path, monkeypatch, on_a_64_core_node):
    quota, period = tmp_path / "cpu.cfs_quota_us", tmp_path / "cpu.cfs_period_us"
    quota.write_text("200000\n")
    period.write_text("100000\n")
    monkeypatch.setattr(cpus, "CPU_QUOTA_FILES", ((str(tmp_path / "missing"),) * 2, (str(quota), str(period))))
    assert cpus.usable_cpus() == 2
    quota.write_text("-1\n")  # v1's "no limit"
    assert cpus.usable_cpus() == 64
    quota.write_text("garbage\n")
    assert cpus.usable_cpus() == 64


def test_usable_cpus_never_exceed_the_cpu_set(tmp_path, monkeypatch):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("1600000 100000\n")  # a 16-CPU limit, pinned to 2
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(cpus, "CPU_QUOTA_FILES", ((str(cpu_max), str(cpu_max)),))
    assert cpus.usable_cpus() == 2


def test_the_cpu_model_comes_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t\t: avx2\n")
    assert cpus.cpu_model(info) == "AMD EPYC 7B13"


def test_a_cpu_without_a_model_name_falls_back_to_what_platform_knows(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nCPU part\t: 0xd0c\n")  # Arm: no "model name" line
    assert cpus.cpu_model(info) == (platform.processor() or platform.machine() or "unknown")
    assert cpus.cpu_model(tmp_path / "missing") == cpus.cpu_model(info)
    assert 1 <= cpus.usable_cpus() <= (os.cpu_count() or 1)


def test_the_decoders_size_their_pools_without_importing_torch():
    """Spawned decoding workers import kubeclr.data.ingest; torch in it would cost each worker seconds and memory."""
    code = "import sys, kubeclr.data.ingest; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.fixture
def torch_threads(monkeypatch):
    """Torch with a pool of 2 threads and no OMP_NUM_THREADS; the pool is put back afterwards."""
    torch = pytest.importorskip("torch")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield torch
    torch.set_num_threads(before)


@pytest.mark.parametrize("limit, threads", [(1, 1), (64, 2)], ids=["a limit below torch's pool", "no lower limit"])
def test_a_step_runs_torch_within_its_cpu_limit(monkeypatch, torch_threads, limit, threads):
    """A pod limited to 1 CPU on a big node: torch's pool, sized from the node, shrinks to 1; it never grows."""
    from kubeclr.config import Config
    from kubeclr.steps import runtime

    monkeypatch.setattr(cpus, "usable_cpus", lambda: limit)
    step = lambda cfg: torch_threads.get_num_threads()
    assert runtime.run_step("compute_stats", step, Config().to_dict(), run_name="t") == threads


def test_a_training_process_under_torchrun_runs_torch_within_its_cpu_limit(monkeypatch, torch_threads):
    """A multi-node job's ranks start in kubeclr.launch.entry, not in a step: they are capped there."""
    from kubeclr.launch import entry

    monkeypatch.setattr(cpus, "usable_cpus", lambda: 1)
    assert entry.main(["--config-json", "{}", "--train", "t.npz", "--stats", "s.json"]) == 2  # nothing to write
    assert torch_threads.get_num_threads() == 1


def test_omp_num_threads_set_by_the_user_wins(monkeypatch, torch_threads):
    monkeypatch.setattr(cpus, "usable_cpus", lambda: 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    cpus.cap_torch_threads()
    assert torch_threads.get_num_threads() == 2
