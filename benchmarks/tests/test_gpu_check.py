"""``benchmarks/gpu_check.sh`` runs as is, on CPU at tiny sizes, and writes what it promises."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).parents[2]


@pytest.mark.slow
def test_gpu_check_runs_at_tiny_sizes_on_cpu(tmp_path):
    env = {**os.environ, "GPU_CHECK_TINY": "1"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = (tmp_path / "summary.md").read_text()
    for step in ("tests", "bench_clients", "bench_precision", "bench_sweep", "main_job"):
        row = next(line for line in summary.splitlines() if line.startswith(f"| {step} |"))
        assert row.split("|")[2].strip() == "0", (step, summary, done.stderr[-3000:])
    for name in ("env.txt", "tests.log", "bench_clients.md", "bench_precision.md", "bench_sweep.md",
                 "main_job.txt"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0, name
    assert "backend cpu" in (tmp_path / "env.txt").read_text()
    assert not (tmp_path / "jax_cache").exists()


def test_gpu_check_names_what_is_missing_in_one_line(tmp_path):
    """With a python that lacks the packages, it says which in one line and exits 2."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text('#!/bin/sh\nexec /usr/bin/env -i python3 -S "$@"\n')
    (fake / "python").chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake / "python")}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing python packages: jax" in lines[0], done.stderr
    assert not (tmp_path / "out" / "summary.md").exists()
