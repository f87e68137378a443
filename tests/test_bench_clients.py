"""scripts/bench_clients.py runs end to end at the tiniest sizes and reports what it measures."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(tmp_path, *extra):
    out = tmp_path / "bench"
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "scripts", "bench_clients.py"),
            "--models",
            "digits",
            "--clients",
            "1,2",
            "--local-steps",
            "1",
            "--batch-size",
            "4",
            "--repeats",
            "1",
            "--matmul-size",
            "128",
            "--out",
            str(out),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with open(out / "bench_clients.json") as f:
        report = json.load(f)
    return report, (out / "bench_clients.md").read_text(), result.stdout


def _check_common(report, md):
    assert set(report["ceilings"]) == {"float32", "bfloat16"}
    assert all(v["gflops"] > 0 for v in report["ceilings"].values())
    digits = report["models"]["digits"]
    assert digits["flops_source"].startswith("XLA cost analysis")
    assert "CPU backend" in digits["flops_source"]
    assert digits["flops_per_example"] > 0
    for c in ("1", "2"):
        summary = digits["summary"][c]
        assert summary["ours_over_one_model"] > 0
        assert 0 < summary["ours_fraction_of_float32_peak"]
        assert 0 < summary["ours_fraction_of_bfloat16_peak"]
    assert "% of bf16 peak" in md and "ours / one model" in md


@pytest.mark.slow
def test_bench_clients_with_torch(tmp_path):
    pytest.importorskip("torch")
    report, md, _ = _run(tmp_path)
    _check_common(report, md)
    assert report["torch"]["device"] == "cpu" and report["torch"]["same_device_as_jax"]
    digits = report["models"]["digits"]
    assert digits["torch_skipped"] == {}
    for c in ("1", "2"):
        rows = digits["clients"][c]
        assert rows["PyTorch torch.func.vmap"]["examples_per_second"] > 0
        assert rows["PyTorch per-client loop"]["torch_device"] == "cpu"
        assert digits["summary"][c]["ours_over_best_torch"] > 0
    assert "| PyTorch torch.func.vmap |" in md


@pytest.mark.slow
def test_bench_clients_without_torch(tmp_path):
    report, md, stdout = _run(tmp_path, "--no-torch")
    _check_common(report, md)
    assert report["torch"] == {"skipped": "--no-torch"}
    assert "PyTorch baselines skipped: --no-torch" in stdout
    assert not any(k.startswith("PyTorch") for k in report["models"]["digits"]["clients"]["1"])
