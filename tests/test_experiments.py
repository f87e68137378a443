"""Experiment plumbing: the general configs load, synthetic reports (the study's configs are tested
in experiments/depth_divergence/tests; the seed axis in tests/test_members.py)."""

import json
import math
import pathlib

import numpy as np
import pytest

from fedjax_deep.analysis import mean_ci, write_sweep_report
from fedjax_deep.config import load_config
from fedjax_deep.data import INPUT_SHAPES
from fedjax_deep.models import check_model_config
from fedjax_deep.sweep import expand

GENERAL = sorted((pathlib.Path(__file__).parents[1] / "configs").glob("*.py"))


@pytest.mark.parametrize("path", GENERAL, ids=[p.stem for p in GENERAL])
def test_every_general_config_loads_and_expands(path):
    points = expand(load_config(path))
    assert points and len({p.name for p in points}) == len(points)
    for point in points:
        check_model_config(point.config.model, INPUT_SHAPES[point.config.data.name])
    doc = path.read_text().split('"""')[1]
    assert "fedjax-deep train --config configs/" in doc  # the docstring gives the command


def _fake_run(root, name, mode, depth, seed, acc_first, acc_last, divs):
    run = root / name
    run.mkdir(parents=True)
    layers = [f"conv_{i}" for i in range(depth)] + ["head"]
    config = {"seed": seed, "mode": mode, "model": {"name": "plain_cnn", "depth": depth,
              "width": 8, "norm": "group", "kernel_size": 3}, "sweep": []}  # fmt: skip
    (run / "config.json").write_text(json.dumps(config))
    info = {"layers": layers, "receptive_field": 1 + 2 * depth, "dataset": "synthetic",
            "num_train": 100, "num_test": 20}  # fmt: skip
    (run / "run_info.json").write_text(json.dumps(info))
    rows = []
    for r, acc in enumerate((acc_first, acc_last)):
        row = {"round": r + 1, "eval/accuracy": acc, "train/num_examples": 100}
        if mode != "centralized":
            row["divergence/mean/relative"] = divs[r]
            for i, layer in enumerate(layers):
                row[f"divergence/{layer}/kernel/relative"] = divs[r] * (i + 1)
        rows.append(row)
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    (run / "summary.json").write_text(json.dumps({"final_accuracy": acc_last}))


def test_report_on_synthetic_runs_matches_the_inputs(tmp_path):
    sweep = {"sweep": [["model.depth", [2, 4]], ["mode", ["fl", "centralized", "independent"]],
                       ["seed", [0, 1, 2]]],
             "model": {"name": "plain_cnn", "width": 8, "norm": "group", "kernel_size": 3},
             "fl": {"num_clients": 4, "local_steps": 0, "local_epochs": 2, "batch_size": 8},
             "num_rounds": 2, "client_opt": {"learning_rate": 0.1, "momentum": 0.9,
                                             "weight_decay": 0.0}}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(sweep))
    fl_last = {2: [0.80, 0.82, 0.84], 4: [0.70, 0.75, 0.65]}
    for depth in (2, 4):
        for seed in range(3):
            base = f"depth-{depth}_seed-{seed}"
            _fake_run(tmp_path, f"{base}_fl", "fl", depth, seed, 0.5, fl_last[depth][seed],
                      (0.01 * depth, 0.001))  # fmt: skip
            _fake_run(tmp_path, f"{base}_cl", "centralized", depth, seed, 0.6, 0.9, None)
            _fake_run(tmp_path, f"{base}_ind", "independent", depth, seed, 0.6, 0.9,
                      (0.002 * depth, 0.003))  # fmt: skip
    path = write_sweep_report(tmp_path)
    text = path.read_text()
    lines = text.splitlines()
    header = [
        c.strip() for c in next(x for x in lines if x.startswith("| depth |")).strip("|").split("|")
    ]
    row4 = [
        c.strip() for c in next(x for x in lines if x.startswith("| 4 |")).strip("|").split("|")
    ]
    assert len(row4) == len(header)
    cells = dict(zip(header, row4, strict=True))
    t975 = 4.302652729911275  # Student t, 2 degrees of freedom, 97.5%
    mean, half = np.mean(fl_last[4]), t975 * np.std(fl_last[4], ddof=1) / np.sqrt(3)
    assert cells["FL acc (last)"] == f"{mean * 100:.1f} ± {half * 100:.1f}"  # 70.0 ± 12.4
    gap_mean, gap_half, _ = mean_ci([0.9 - a for a in fl_last[4]])
    assert cells["gap (last)"] == f"{gap_mean * 100:.1f} ± {gap_half * 100:.1f}"
    assert cells["CL acc (last)"] == "90.0 ± 0.0" and cells["RF"] == "9"
    assert cells["model"] == "plain_cnn-4 w8"
    assert cells["FL divergence (round 1)"] == "4.00e-02 ± 0.0e+00"  # 0.01 x depth
    assert cells["null divergence (round 1)"] == "8.00e-03 ± 0.0e+00"  # 0.002 x depth
    assert cells["seeds"] == "3"
    assert mean_ci([1.0])[2] == 1 and math.isnan(mean_ci([1.0])[1])
    pngs = ("accuracy.png", "divergence_profile.png", "gap.png", "divergence_over_rounds.png",
            "null_profile.png")  # fmt: skip
    for png in pngs:
        assert (tmp_path / png).stat().st_size > 2000, png
        assert f"]({png})" in text


def test_cli_vmapped_sweep_axis_matches_one_seed_after_another(tmp_path):
    """``sweep_axis=on`` vmaps the members (batched float order: close, not bit-identical)."""
    from fedjax_deep import cli

    tiny = str(pathlib.Path(__file__).parents[1] / "configs" / "digits_tiny.py")
    rows = {}
    for axis in ("on", "off"):
        workdir = tmp_path / axis
        code = cli.main(["train", "--config", tiny, "--workdir", str(workdir), "--no-progress",
                         "--config.sweep=(('seed', (0, 1)),)", f"--config.sweep_axis={axis}",
                         "--config.compile_cache=off"])  # fmt: skip
        assert code == 0
        info = json.loads((workdir / "seed-1" / "run_info.json").read_text())
        if axis == "on":
            assert info["sweep_axis"]["members"] == 2 and info["sweep_axis"]["execution"] == "vmap"
        else:
            assert info["sweep_axis"] is None
        rows[axis] = [
            [json.loads(x) for x in (workdir / f"seed-{s}" / "metrics.jsonl").read_text().split("\n") if x]
            for s in (0, 1)
        ]  # fmt: skip
    for seed in (0, 1):
        for a, b in zip(rows["on"][seed], rows["off"][seed], strict=True):
            for k, v in a.items():
                if k.startswith("time/") or v is None:
                    continue
                assert v == pytest.approx(b[k], rel=1e-4, abs=1e-5), (seed, k)
