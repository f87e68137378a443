"""scripts/e1_summary.py lays out compare's own numbers: checked on the committed E1 result."""

import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("e1_summary", ROOT / "scripts" / "e1_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_depth_table_repeats_compare_and_pairs_non_reference_arms():
    e1 = _load()
    result = json.loads((ROOT / "docs/results/e1_tuned_mnist1d/compare.json").read_text())
    text = e1.summary(result)
    arms = result["groups"]["16"]
    fl = next(a for a in arms.values() if a["arm"]["mode"] == "fl")
    sm = next(a for a in arms.values() if a["arm"].get("fl.batch_size") == 360)
    row = next(line for line in text.splitlines() if line.startswith("| 16 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == f"{fl['final']['mean'] * 100:.1f} ± {fl['final']['half'] * 100:.1f} (0.03)"
    assert cells[5] == f"{fl['gap']['mean'] * 100:.1f} ± {fl['gap']['half'] * 100:.1f}"
    # steps-matched CL - FL, paired by hand from the per-seed values.
    d = [sm["per_seed"][s]["final"] - fl["per_seed"][s]["final"] for s in fl["per_seed"]]
    assert cells[6].startswith(f"{sum(d) / len(d) * 100:.1f} ± ")
    assert cells[6].endswith("(n.r.)")  # E1: 4.1 ± 9.3 at depth 16
    assert e1.arm_role(sm["arm"]) == "steps-matched CL" and e1.arm_role(fl["arm"]) == "FL"
