"""experiments/depth_divergence/scripts/e1_summary.py lays out compare's own numbers: checked on the committed E1 result."""

import importlib.util
import json
import pathlib

STUDY = pathlib.Path(__file__).parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("e1_summary", STUDY / "scripts" / "e1_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_depth_table_repeats_compare_and_pairs_non_reference_arms():
    e1 = _load()
    result = json.loads((STUDY / "results/e1_tuned_mnist1d/compare.json").read_text())
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
    # The gap's change from depth 2, paired seed by seed, by hand.
    shallow = result["groups"]["2"]
    fl2 = next(a for a in shallow.values() if a["arm"]["mode"] == "fl")
    cl2 = next(a for a in shallow.values() if a["arm"]["mode"] == "centralized"
               and a["arm"].get("fl.batch_size") != 360)  # fmt: skip
    cl = next(a for a in arms.values() if a["arm"]["mode"] == "centralized"
              and a["arm"].get("fl.batch_size") != 360)  # fmt: skip
    seeds = sorted(set(fl["per_seed"]) & set(fl2["per_seed"]))
    change = [(cl["per_seed"][s]["final"] - fl["per_seed"][s]["final"])
              - (cl2["per_seed"][s]["final"] - fl2["per_seed"][s]["final"]) for s in seeds]  # fmt: skip
    assert cells[7].startswith(f"{sum(change) / len(change) * 100:.1f} ± ")
    two = next(line for line in text.splitlines() if line.startswith("| 2 |"))
    assert two.split("|")[8].strip() == "(depth 2)"


def test_coefficient_variants_are_chosen_on_validation_and_remedies_carry_their_rf():
    e1 = _load()
    assert e1.arm_role({"mode": "fl", "algorithm.name": "fedprox", "algorithm.mu": 0.1}) == (
        "FedProx (mu 0.1)"
    )
    assert e1.arm_role({"mode": "fl", "algorithm.name": "feddyn"}) == "FedDyn (alpha 0.01)"
    dirichlet = {"mode": "fl", "data.partition": "dirichlet", "data.dirichlet_alpha": 0.1}
    assert e1.arm_role(dirichlet) == "FL, Dirichlet(0.1)"
    # Receptive fields by hand: 1 + (k - 1)(1 + s (depth - 1)).
    assert e1.receptive_field({"kernel_size": "5", "stem_stride": "1"}, 16) == 65
    assert e1.receptive_field({"kernel_size": "3", "stem_stride": "1"}, 16) == 33
    assert e1.receptive_field({"kernel_size": "5", "stem_stride": "2"}, 16) == 125

    def arm(fields, lr, val, finals):
        per_seed = {
            str(s): {"final": f, "plateau": {"certified": True}} for s, f in enumerate(finals)
        }
        return {"arm": {"mode": "fl", **fields}, "chosen_lr": lr, "grid": {f"{lr:g}": val},
                "grid_warning": None, "per_seed": per_seed,
                "final": {"mean": sum(finals) / len(finals), "half": 0.01}}  # fmt: skip

    prox = {"algorithm.name": "fedprox"}
    result = {"groups": {"depth=16": {
        "fl": arm({}, 0.1, 0.80, [0.8, 0.82, 0.81]),
        "a": arm({**prox, "algorithm.mu": 0.001}, 0.1, 0.83, [0.7, 0.72, 0.71]),
        "b": arm({**prox, "algorithm.mu": 0.1}, 0.03, 0.79, [0.9, 0.92, 0.91])}}}  # fmt: skip
    rows = {line.split("|")[2].strip(): line for line in e1.summary(result).splitlines()
            if line.startswith("| 16 | FedProx")}  # fmt: skip
    # The best validation score chooses, not the best test accuracy.
    # mu 0.001 is the smallest mu tried: chosen at an end, so starred.
    assert set(rows) == {"FedProx (mu 0.001) (chosen*)", "FedProx (mu 0.1)"}
    assert "| 83.0 |" in rows["FedProx (mu 0.001) (chosen*)"]
    assert "-10.0 ± " in rows["FedProx (mu 0.001) (chosen*)"]  # paired against FedAvg's FL
    # A server optimizer's rate is its coefficient; an interior best is not starred.
    assert e1.arm_role({"mode": "fl", "server_opt.name": "adam",
                        "server_opt.learning_rate": 0.003}) == "FedAdam (server lr 0.003)"  # fmt: skip
    sgdm = {"server_opt.name": "sgd", "server_opt.momentum": 0.9}
    result["groups"]["depth=16"].update({
        f"m{k}": arm({**sgdm, "server_opt.learning_rate": rate}, 0.1, val, [0.8, 0.8, 0.81])
        for k, (rate, val) in enumerate(((0.1, 0.7), (0.3, 0.75), (1.0, 0.6)))})  # fmt: skip
    rows = [line.split("|")[2].strip() for line in e1.summary(result).splitlines()
            if line.startswith("| 16 | FedAvgM")]  # fmt: skip
    assert rows == ["FedAvgM (server lr 0.1)", "FedAvgM (server lr 0.3) (chosen)",
                    "FedAvgM (server lr 1)"]  # fmt: skip


def test_local_steps_arms_get_their_own_rows_paired_against_the_one_step_limit():
    e1 = _load()
    assert e1.arm_role({"mode": "fl", "fl.local_steps": 0}) == "FL"  # E1's 1 epoch a round
    assert e1.arm_role({"mode": "fl", "fl.local_steps": 1}) == "FL, 1 local step"
    assert e1.arm_role({"mode": "fl", "fl.local_steps": 40}) == "FL, 40 local steps"

    def arm(fields, finals):
        per_seed = {
            str(s): {"final": f, "plateau": {"certified": True}} for s, f in enumerate(finals)
        }
        return {"arm": fields, "chosen_lr": 0.1, "grid": {"0.1": 0.5}, "grid_warning": None,
                "per_seed": per_seed, "final": {"mean": sum(finals) / 3, "half": 0.01}}  # fmt: skip

    fl = {"mode": "fl", "fl.batch_size": 36}
    result = {"groups": {"8": {
        "sm": arm({"mode": "centralized", "fl.batch_size": 360, "fl.local_steps": 1}, [.9] * 3),
        "one": arm({**fl, "fl.local_steps": 1}, [0.88, 0.90, 0.89]),
        "ten": arm({**fl, "fl.local_steps": 0}, [0.80, 0.80, 0.80]),
        "forty": arm({**fl, "fl.local_steps": 40}, [0.70, 0.71, 0.72])}}}  # fmt: skip
    section = e1.summary(result).split("### Local steps")[1]
    row = next(line for line in section.splitlines() if line.startswith("| 8 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == "-"  # no server-momentum arm here
    assert cells[4].startswith("89.0 ± ") and cells[6].startswith("71.0 ± ")
    assert cells[8].startswith("1.0 ± ")  # steps-matched CL - FL 1, paired by seed
    assert cells[9] == "-"  # FL 1 + SM - FL 10: no server-momentum arm
    assert cells[10].startswith("9.0 ± ") and cells[11].startswith("9.0 ± ")
    assert cells[12] == "-" and cells[-1] == "- / 3/3 / 3/3 / 3/3"
    assert "### Local steps at 80 rounds" not in e1.summary(result)  # no 80-round arm here
    # The 40-step arm run for 80 rounds gets its own table, against E1's FL at equal rounds.
    result["groups"]["8"]["forty80"] = arm({**fl, "fl.local_steps": 40, "num_rounds": 80},
                                           [0.84, 0.82, 0.83])  # fmt: skip
    section = e1.summary(result).split("### Local steps at 80 rounds")[1]
    row = next(line for line in section.splitlines() if line.startswith("| 8 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4].startswith("83.0 ± ") and cells[5].startswith("3.0 ± ")  # 40 x 80 - 10
    assert cells[8].startswith("7.0 ± ") and cells[-1] == "3/3 / 3/3"  # steps-matched CL - it
    momentum = {"mode": "fl", "fl.local_steps": 1, "server_opt.momentum": 0.9}
    assert e1.arm_role(momentum) == "FL, 1 local step, server momentum 0.9"
    # Off E5's budget of 800 local steps the rounds join the role (they would clash otherwise).
    assert e1.arm_role({**fl, "fl.local_steps": 40, "num_rounds": 20}) == "FL, 40 local steps"
    assert e1.arm_role({**fl, "fl.local_steps": 40, "num_rounds": 80}) == (
        "FL, 40 local steps x 80 rounds"
    )


def test_e5_curves_put_every_arm_on_the_axis_of_local_steps(tmp_path):
    spec = importlib.util.spec_from_file_location("e5_curves", STUDY / "scripts" / "e5_curves.py")
    e5 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(e5)

    def arm(fields, rounds):
        per_seed = {str(s): {"rounds": rounds, "accuracy": [0.1 * s + r / 1000 for r in rounds]}
                    for s in range(2)}  # fmt: skip
        return {"arm": fields, "per_seed": per_seed}

    fl = {"mode": "fl", "fl.batch_size": 36}
    result = {"groups": {"8": {
        "one": arm({**fl, "fl.local_steps": 1}, [10, 20, 800]),
        "ten": arm({**fl, "fl.local_steps": 0}, [1, 2, 80]),
        "forty": arm({**fl, "fl.local_steps": 40}, [1, 2, 20]),
        "sm": arm({"mode": "centralized", "fl.batch_size": 360, "fl.local_steps": 1}, [1, 80]),
        "cl": arm({"mode": "centralized", "fl.batch_size": 36, "fl.local_steps": 0}, [1, 80])}}}  # fmt: skip
    data = e5.curves(result)[8]
    assert data["FL, 1 local step"][0].tolist() == [10, 20, 800]
    assert data["FL"][0].tolist() == [10, 20, 800]  # 10 steps a round
    assert data["FL, 40 local steps"][0].tolist() == [40, 80, 800]
    assert data["steps-matched CL"][0].tolist() == [10, 800]
    assert data["CL"][0].tolist() == [100, 8000]  # 100 steps of batch 36 a round
    assert data["FL"][1].shape == (2, 3)
    e5.plot(result, str(tmp_path / "e5.png"))
    assert (tmp_path / "e5.png").stat().st_size > 2000


def test_architecture_controls_are_compared_with_the_baseline_at_their_own_depth():
    e1 = _load()

    def arm(mode, finals):
        per_seed = {
            str(s): {"final": f, "plateau": {"certified": True}} for s, f in enumerate(finals)
        }
        mean = sum(finals) / len(finals)
        return {"arm": {"mode": mode}, "chosen_lr": 0.1, "grid": {"0.1": 0.5},
                "grid_warning": None, "per_seed": per_seed, "final": {"mean": mean, "half": 0.01},
                "gap": {"mean": 0.0, "half": 0.01, "resolved": False}}  # fmt: skip

    def pair(cl, fl):
        return {"cl": arm("centralized", cl), "fl": arm("fl", fl)}

    result = {"groups": {
        "depth=2": pair([0.9, 0.9, 0.9], [0.8, 0.81, 0.82]),  # gaps 10, 9, 8
        "depth=2, skip=True": pair([0.9, 0.9, 0.9], [0.7, 0.7, 0.7]),  # gaps 20, 20, 20
        "depth=2, skip=True, skip_before_relu=True": pair([0.9] * 3, [0.85] * 3),
        "depth=8": pair([0.95] * 3, [0.9] * 3),  # no control at depth 8: no rows
        "depth=16": pair([0.95] * 3, [0.85, 0.84, 0.84]),  # gaps 10, 11, 11
        "depth=16, norm=none": pair([0.95] * 3, [0.5, 0.5, 0.5])}}  # fmt: skip
    section = e1.summary(result).split("### Architecture by depth")[1].split("###")[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| depth")]  # fmt: skip
    assert [(r[0], r[1]) for r in rows] == [
        ("2", "CNN w8 k5, GroupNorm gcd(8, w) groups"),
        ("2", "CNN w8 k5, residual, sum after the ReLU, GroupNorm gcd(8, w) groups"),
        ("2", "CNN w8 k5, residual, ReLU after the sum, GroupNorm gcd(8, w) groups"),
        ("16", "CNN w8 k5, GroupNorm gcd(8, w) groups"),
        ("16", "CNN w8 k5, no norm"),
    ]
    assert rows[0][5] == rows[3][5] == "(baseline)"
    assert rows[1][5].startswith("11.0 ± ")  # 20 - 9, against depth 2's baseline
    assert rows[2][5].startswith("-4.0 ± ")  # 5 - 9
    assert rows[4][5].startswith("34.3 ± ")  # 45 - 10.7, against depth 16's baseline
    assert rows[0][6] == rows[1][6] == rows[2][6] == "(depth 2)"
    assert rows[3][6].startswith("1.7 ± ")  # the baseline's gap at 16 less its gap at 2
    assert rows[4][6] == "-"  # no no-norm net at depth 2
