"""benchmarks/bench_clients.py: its pieces in process (fast), and end to end at the tiniest sizes
(slow: a subprocess compiles every variant)."""

import argparse
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = argparse.Namespace(local_steps=2, batch_size=4)


@pytest.fixture(scope="module")
def bench():
    """The script as a module (it parses ``sys.argv`` on import: give it its own)."""
    argv = sys.argv
    sys.argv = ["bench_clients.py", "--no-torch"]
    try:
        spec = importlib.util.spec_from_file_location(
            "bench_clients", os.path.join(ROOT, "benchmarks", "bench_clients.py")
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.argv = argv
    return module


def test_flops_from_the_cpu_cost_analysis(bench):
    flops, source, counts = bench.flops_per_example("digits", TINY)
    assert source == "XLA cost analysis of one training step compiled for the CPU backend"
    assert flops == counts["xla_cost_analysis_cpu"] > 0
    # The analytic count (convolutions and matmuls, padding taps included) agrees to within 25%.
    assert 0.75 < counts["jaxpr_analytic"] / flops < 1.25


def test_summary_and_markdown(bench):
    def row(rate):
        return {"examples_per_second": rate, "gflops": rate / 1e3, "ours_best_over_this": 1.0}

    ceilings = {"float32": {"gflops": 100.0, "n": 8}, "bfloat16": {"gflops": 200.0, "n": 8}}
    rows = {
        "ours: vmap": row(300.0),
        "ours: auto": row(400.0),
        "ours: auto + divergence metrics": row(900.0),  # not a strategy: left out of "best"
        "PyTorch per-client loop": row(100.0),
        "PyTorch torch.func.vmap": row(200.0),
        "one model, C x B per step": row(800.0),
    }
    summary = bench.summarize(rows, 1e6, ceilings)
    assert summary["ours_best"] == "ours: auto"
    assert summary["best_torch"] == "PyTorch torch.func.vmap"
    assert summary["ours_over_best_torch"] == pytest.approx(2.0)
    assert summary["ours_over_one_model"] == pytest.approx(0.5)
    assert summary["ours_fraction_of_float32_peak"] == pytest.approx(0.4 / 100)
    assert summary["ours_fraction_of_bfloat16_peak"] == pytest.approx(0.4 / 200)
    rows_without_vmap = {k: v for k, v in rows.items() if k != "PyTorch torch.func.vmap"}
    report = {
        "date": "today",
        "command": "bench",
        "backend": "cpu",
        "devices": 1,
        "device_kind": "cpu",
        "cpu_count": 2,
        "jax": "0",
        "local_steps": 2,
        "batch_size": 4,
        "ceilings": ceilings,
        "dense_gflops": 100.0,
        "torch": {"version": "2", "device": "cpu", "same_device_as_jax": True, "settings": "-"},
        "models": {
            "digits": {
                "flops_per_example": 1e6,
                "flops_source": "XLA cost analysis of one training step compiled for the CPU",
                "clients": {1: rows_without_vmap, 2: rows},
                "summary": {1: bench.summarize(rows_without_vmap, 1e6, ceilings), 2: summary},
                "torch_skipped": {"PyTorch torch.func.vmap, C=1": "RuntimeError: no"},
            }
        },
    }
    md = bench.markdown(report)
    assert "| 2 | auto (400) | 0.4 | 0.4% | 0.2% | PyTorch torch.func.vmap (200) | 2.00x |" in md
    assert "| 1 | auto (400) | 0.4 | 0.4% | 0.2% | PyTorch per-client loop (100) | 4.00x |" in md
    assert "| PyTorch torch.func.vmap | - | 200 |" in md
    assert "- not run: PyTorch torch.func.vmap, C=1: RuntimeError: no" in md
    assert "PyTorch 2 on **cpu**" in md


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_torch_func_vmap_trains_like_the_loop(bench, monkeypatch, norm):
    """The stacked torch.func clients end where the per-client loop does: weights, BatchNorm's
    running statistics and its counter."""
    torch = pytest.importorskip("torch")
    if norm == "batch":  # a small BatchNorm net on the digits shape (ResNet-18 is slow here)

        def small_bn_net(name):
            torch.manual_seed(0)
            return torch.nn.Sequential(
                torch.nn.Conv2d(1, 8, 3, padding=1, bias=False),
                torch.nn.BatchNorm2d(8),
                torch.nn.ReLU(),
                torch.nn.Flatten(),
                torch.nn.Linear(8 * 8 * 8, 10),
            )

        monkeypatch.setattr(bench, "_torch_model", small_bn_net)
    device = torch.device("cpu")
    loop, _ = bench.bench_torch_loop("digits", 3, TINY, device)
    stacked, _ = bench.bench_torch_vmap("digits", 3, TINY, device)
    start = bench._torch_model("digits").state_dict()
    a, b = loop(), stacked()
    assert a.keys() == b.keys() == start.keys()
    for k in a:
        if a[k].is_floating_point():
            scale = (a[k] - start[k]).abs().max()
            assert scale > 0, k  # it trained
            assert (a[k] - b[k]).abs().max() <= 1e-3 * scale, k
        else:
            assert torch.equal(a[k], b[k]), k


def _run(tmp_path, *extra):
    out = tmp_path / "bench"
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "bench_clients.py"),
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
