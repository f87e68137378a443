"""The tables of E1's reviewer controls, read from a ``fedjax-deep compare`` result (compare.json).

    fedjax-deep compare runs/e1_tuned runs/e1_controls runs/e1_data_models runs/e1_widen_a \\
        runs/e1_widen_b --out runs/e1_all --reference mode=centralized,fl.batch_size=36 \\
        --group model.depth,model.name,model.width,model.kernel_size,model.skip,model.norm,model.norm_group_size
    python experiments/depth_divergence/scripts/e1_summary.py runs/e1_all/compare.json > runs/e1_all/summary.md

(The full list of sweeps and --group fields is in experiments/depth_divergence/results/e1_final_mnist1d/README.md.)

Every number is compare's: the plateau test accuracy of each arm at its own learning rate (chosen
on validation), and paired 95% t-intervals over seeds of the differences. This script only names
the arms, lays the groups out by question (depth, architecture, algorithm, remedy) and adds the
paired differences between two arms that are not the reference (an algorithm against FedAvg,
full-data clients against 360-signal clients), from the same per-seed values.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from fedjax_deep.analysis.stats import (
    PLATEAU_WINDOW,
    TOL,
    certify_plateau,
    fmt_ci,
    paired_interval,
)
from fedjax_deep.config import default_config, get_field
from fedjax_deep.models import receptive_field as receptive_field_of

BASE = {"name": "plain_cnn", "width": "8", "kernel_size": "5", "skip": "False", "norm": "group",
        "norm_group_size": "0", "stem_stride": "1", "skip_before_relu": "False"}  # fmt: skip
COEFFICIENT = {"fedprox": "algorithm.mu", "feddyn": "algorithm.alpha"}
DEFAULTS = default_config()  # a field a sweep did not set was run at its default
ALGORITHMS = {"fedprox": "FedProx", "scaffold": "SCAFFOLD", "feddyn": "FedDyn"}
SERVER_OPTS = {"sgd": "FedAvgM", "adam": "FedAdam", "yogi": "FedYogi", "adagrad": "FedAdagrad"}
E5_BUDGET = 800  # local steps per client in E5 (experiments/depth_divergence/configs/e5/local_steps_tuned.py)


def parse_group(label: str) -> dict:
    if "=" not in label:  # a comparison grouped by depth alone (the main job)
        return {"depth": label}
    return dict(part.split("=", 1) for part in label.split(", "))


def arm_role(arm: dict) -> str:
    mode = arm.get("mode")
    if mode == "independent":
        return "null"
    if mode == "centralized":
        return "steps-matched CL" if int(arm.get("fl.batch_size", 36)) > 36 else "CL"
    if arm.get("data.partition") == "full":
        return "FL, full-data clients"
    if arm.get("data.partition") == "dirichlet":
        alpha = arm.get("data.dirichlet_alpha", get_field(DEFAULTS, "data.dirichlet_alpha"))
        return f"FL, Dirichlet({alpha:g})"
    name = arm.get("algorithm.name", "fedavg")
    steps = int(arm.get("fl.local_steps", 0))
    if steps > 0 and name == "fedavg":  # E5: a fixed number of local steps a round
        role = f"FL, {steps} local step{'s' if steps > 1 else ''}"
        rounds = arm.get("num_rounds")
        if rounds is not None and steps * int(rounds) != E5_BUDGET:
            role += f" x {rounds} rounds"  # off E5's budget (the 40-step arm run to a plateau)
        momentum = float(arm.get("server_opt.momentum", 0.0))
        return role + (f", server momentum {momentum:g}" if momentum else "")
    if name in COEFFICIENT:
        field = COEFFICIENT[name]
        value = arm.get(field, get_field(DEFAULTS, field))
        return f"{ALGORITHMS[name]} ({field.split('.')[1]} {value:g})"
    server = arm.get("server_opt.name", "sgd")
    if name == "fedavg" and (server != "sgd" or float(arm.get("server_opt.momentum", 0.0))):
        rate = arm.get("server_opt.learning_rate", get_field(DEFAULTS, "server_opt.learning_rate"))
        return f"{SERVER_OPTS[server]} (server lr {rate:g})"  # its server rate is a coefficient
    return ALGORITHMS.get(name, "FL")


def coefficient(role: str) -> float:
    """The coefficient a variant's role names: ``FedProx (mu 0.01)`` -> 0.01."""
    return float(role.rsplit(" ", 1)[1].rstrip(")"))


def validation(arm: dict) -> float:
    """The arm's mean validation accuracy at its chosen rate (on its tuning seeds)."""
    scores = {float(lr): v for lr, v in (arm.get("grid") or {}).items()}
    return scores.get(float(arm["chosen_lr"]), -math.inf)


def collect(result: dict) -> dict:
    """``{(depth, architecture key): {role: arm}}``; an architecture key is the group's fields
    other than depth, defaults filled in."""
    out: dict = {}
    for label, arms in result["groups"].items():
        g = {**BASE, **parse_group(label)}
        arch = tuple(sorted((k, v) for k, v in g.items() if k != "depth"))
        for arm in arms.values():
            out.setdefault((int(g["depth"]), arch), {})[arm_role(arm["arm"])] = arm
    return out


def _ci(stat: dict, scale: float) -> str:
    """``fmt_ci`` of a JSON interval (JSON has no nan: a missing value is None)."""
    mean, half = (math.nan if stat.get(k) is None else stat[k] for k in ("mean", "half"))
    return fmt_ci(mean, half, scale)


def acc(arm: dict | None) -> str:
    if not arm:
        return "-"
    text = _ci(arm["final"], 100.0)
    edge = "*" if arm.get("grid_warning") else ""
    return f"{text} ({arm['chosen_lr']:g}{edge})"


def gap(arm: dict | None) -> str:
    if not arm or "gap" not in arm:
        return "-"
    g = arm["gap"]
    return _ci(g, 100.0) + ("" if g["resolved"] else " (n.r.)")


def paired(a: dict | None, b: dict | None) -> str:
    """``a - b`` in points over their common seeds (paired t-interval)."""
    if not a or not b:
        return "-"
    seeds = sorted(set(a["per_seed"]) & set(b["per_seed"]))
    p = paired_interval([a["per_seed"][s]["final"] for s in seeds],
                        [b["per_seed"][s]["final"] for s in seeds])  # fmt: skip
    if not math.isfinite(p["mean"]):
        return "-"
    return fmt_ci(p["mean"], p["half"], 100.0) + ("" if p["resolved"] else " (n.r.)")


def gap_change(arms: dict, base: dict, minus: str = "CL") -> str:
    """``(minus - FL)`` of ``arms`` less the same gap of ``base``, in points, paired over the
    seeds all four arms share: does this model's gap differ from the baseline's?"""
    if arms is base:
        return "(baseline)"
    four = [arms.get(minus), arms.get("FL"), base.get(minus), base.get("FL")]
    if not all(four):
        return "-"
    seeds = sorted(set.intersection(*(set(a["per_seed"]) for a in four)))
    finals = [[a["per_seed"][s]["final"] for s in seeds] for a in four]
    this = [None if None in (c, f) else c - f for c, f in zip(finals[0], finals[1], strict=True)]
    that = [None if None in (c, f) else c - f for c, f in zip(finals[2], finals[3], strict=True)]
    p = paired_interval(this, that)
    if not math.isfinite(p["mean"]):
        return "-"
    return fmt_ci(p["mean"], p["half"], 100.0) + ("" if p["resolved"] else " (n.r.)")


def seed_plateau(p: dict) -> dict:
    """A seed's certified plateau: compare's record, or (a compare.json written before issue 23)
    certified here from the seed's curve under the same rule."""
    if "plateau" in p:
        return p["plateau"]
    return certify_plateau(100 * np.asarray(p["accuracy"], float), p["rounds"], PLATEAU_WINDOW,
                           100 * TOL)  # fmt: skip


def plateaued(arm: dict | None) -> str:
    """Seeds certified at their last round, ``'3/5'`` (issue 23's rule: the last 10 evaluations
    gain under 0.5 points on the 10 before)."""
    if not arm:
        return "-"
    done = sum(seed_plateau(p)["certified"] for p in arm["per_seed"].values())
    return f"{done}/{len(arm['per_seed'])}"


def rounds80(arm: dict | None) -> str:
    if not arm or "rounds_to_80" not in arm:
        return "-"
    r = arm["rounds_to_80"]
    never = f" ({r['not_reached']} never)" if r["not_reached"] else ""
    return (_ci(r, 1.0) if r["n"] else "-") + never


def arch_name(arch: dict) -> str:
    if arch["name"] == "plain_mlp":
        return f"MLP w{arch['width']}, GroupNorm {arch['norm_group_size']} ch/group"
    parts = [f"CNN w{arch['width']} k{arch['kernel_size']}"]
    if arch.get("stem_stride", "1") != "1":
        parts.append(f"stem stride {arch['stem_stride']}")
    if arch["skip"] == "True":
        before = arch.get("skip_before_relu") == "True"
        parts.append("residual, ReLU after the sum" if before else "residual, sum after the ReLU")
    norm = {"batch": "BatchNorm", "none": "no norm"}.get(arch["norm"])
    if norm:
        parts.append(norm)
    elif arch["norm_group_size"] != "0":
        parts.append(f"GroupNorm {arch['norm_group_size']} ch/group")
    else:
        parts.append("GroupNorm gcd(8, w) groups")
    return ", ".join(parts)


def receptive_field(arch: dict, depth: int) -> int:
    """The plain CNN's receptive field: ``1 + (k - 1) (1 + s (depth - 1))`` for block and stem
    kernel k and stem stride s (fedjax_deep.models.receptive_field on its path)."""
    k, s = int(arch["kernel_size"]), int(arch["stem_stride"])
    return receptive_field_of([(k, s, 1)] + [(k, 1, 1)] * (depth - 1))


def table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def summary(result: dict) -> str:
    data = collect(result)
    base = tuple(sorted(BASE.items()))
    out = ["Test accuracy at the end (mean of the last 5 evaluations) in % (learning rate chosen "
           "on validation; * = an end of its grid); gaps and differences in points, paired 95% "
           "t-intervals over seeds (n.r. = the interval includes 0); certified: seeds whose "
           "plateau holds at their last round (the last 10 evaluations gain under 0.5 points on "
           "the 10 before; where an arm is not certified on every seed, its gaps measure speed, "
           "not final accuracy).", ""]  # fmt: skip

    rows = []
    for depth in sorted(d for d, a in data if a == base):
        arms = data[(depth, base)]
        fl, full = arms.get("FL"), arms.get("FL, full-data clients")
        shallow = data.get((2, base), {})
        rows.append([str(depth), acc(arms.get("CL")), acc(arms.get("steps-matched CL")), acc(fl),
                     acc(full), gap(fl), paired(arms.get("steps-matched CL"), fl),
                     "(depth 2)" if depth == 2 else gap_change(arms, shallow),
                     "(depth 2)" if depth == 2 else gap_change(arms, shallow, "steps-matched CL"),
                     gap(full), paired(full, fl), rounds80(fl), plateaued(fl)])  # fmt: skip
    out += ["### Depth (plain CNN, width 8): FL with 360-signal and with full-data clients", "",
            "Changes against depth 2 are paired over the seeds both depths share.", "",
            table(["depth", "CL", "steps-matched CL", "FL", "FL, full-data clients", "CL - FL",
                   "steps-matched CL - FL", "CL - FL change vs depth 2",
                   "steps-matched CL - FL change vs depth 2", "CL - FL (full data)",
                   "full data - 360 signals", "FL rounds to 80% of CL", "FL certified"],
                  rows), ""]  # fmt: skip

    rows = []
    for depth in sorted(d for d, a in data if a == base):
        fl = data[(depth, base)].get("FL")
        r = fl and fl.get("null_ratio")
        if not r:
            continue
        body = [i for i, layer in enumerate(r["layers"]) if layer != "head"]
        cells = [str(depth)]
        for metric in ("relative", "update"):
            v = [r[metric][i] for i in body]
            cells += [f"{min(v):.2f}-{max(v):.2f}", f"{r[metric][-1]:.2f}"]
        rows.append(cells)
    if rows:
        out += ["### FL over the null reference after round 1 (per layer, mean over seeds)", "",
                table(["depth", "D_l ratio, conv layers (range)", "D_l ratio, head",
                       "U_l ratio, conv layers (range)", "U_l ratio, head"], rows), ""]  # fmt: skip

    def is_control(arch: tuple) -> bool:
        a = dict(arch)
        return (a["name"] == "plain_cnn" and a["width"] == "8" and a["kernel_size"] == "5"
                and a["stem_stride"] == "1")  # fmt: skip

    rows = []
    for depth in sorted({d for d, a in data if a != base and is_control(a)}):
        for (d, arch), arms in sorted(data.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            if d != depth or not is_control(arch) or "CL" not in arms:
                continue
            fl = arms.get("FL")
            shallow = data.get((2, arch), {})
            rows.append([str(depth), arch_name(dict(arch)), acc(arms.get("CL")), acc(fl), gap(fl),
                         gap_change(arms, data.get((depth, base), {})),
                         "(depth 2)" if depth == 2 else gap_change(arms, shallow),
                         rounds80(fl), plateaued(fl)])  # fmt: skip
    if rows:
        out += ["### Architecture by depth (width 8)", "",
            table(["depth", "architecture", "CL", "FL", "CL - FL",
                   "gap - baseline's gap at that depth (seeds 0-4)",
                   "gap - the same architecture's gap at depth 2 (seeds 0-4)",
                   "FL rounds to 80% of CL", "FL certified"], rows), ""]  # fmt: skip

    rows = []
    for (depth, arch), arms in sorted(data.items()):
        if dict(arch)["name"] != "plain_mlp":
            continue
        fl = arms.get("FL")
        rows.append([str(depth), acc(arms.get("CL")), acc(fl), gap(fl), plateaued(fl)])
    if rows:
        out += ["### Plain MLP (width 32) by depth", "",
                table(["depth", "CL", "FL", "CL - FL", "FL certified"], rows), ""]  # fmt: skip

    rows = []
    for depth in sorted(d for d, a in data if a == base):
        arms = data[(depth, base)]
        for alg in (*ALGORITHMS.values(), *SERVER_OPTS.values()):
            variants = sorted((r for r in arms if r == alg or r.startswith(alg + " (")),
                              key=lambda r: (coefficient(r) if "(" in r else 0.0))  # fmt: skip
            best = max(variants, key=lambda r: validation(arms[r]), default=None)
            for role in variants:
                mark = " (chosen)" if len(variants) > 1 and role == best else ""
                if mark and role in (variants[0], variants[-1]):
                    mark = " (chosen*)"  # the best coefficient is an end of those tried
                rows.append([str(depth), role + mark, f"{100 * validation(arms[role]):.1f}",
                             acc(arms[role]), gap(arms[role]), paired(arms[role], arms.get("FL")),
                             plateaued(arms[role])])  # fmt: skip
    if rows:
        out += ["### Drift correction and server optimizers (plain CNN, width 8)", "",
                "An algorithm's coefficient (FedProx's mu, FedDyn's alpha, a server optimizer's "
                "rate) is chosen like its learning rate, on validation accuracy: (chosen) marks "
                "the best of its variants, (chosen*) one at an end of the coefficients tried.", "",
                table(["depth", "algorithm", "validation at its rate", "FL accuracy",
                       "CL - algorithm", "algorithm - FedAvg", "certified"], rows), ""]  # fmt: skip

    rows = []
    for depth in sorted(d for d, a in data if a == base):
        arms = data[(depth, base)]
        for role in sorted(r for r in arms if r.startswith("FL, Dirichlet")):
            rows.append([str(depth), role, acc(arms.get("FL")), acc(arms[role]), gap(arms[role]),
                         paired(arms[role], arms.get("FL")), plateaued(arms[role])])  # fmt: skip
    if rows:
        out += ["### Non-IID clients (plain CNN, width 8, FedAvg)", "",
                table(["depth", "partition", "FL, IID", "FL, non-IID", "CL - FL (non-IID)",
                       "non-IID - IID", "certified"], rows), ""]  # fmt: skip

    for depth in (8, 16):
        rows = []
        for (d, arch), arms in sorted(data.items()):
            a = dict(arch)
            if d != depth or a["name"] != "plain_cnn" or "steps-matched CL" not in arms:
                continue
            if a["skip"] != "False" or a["norm"] != "group" or a["norm_group_size"] != "0":
                continue
            fl, ref = arms.get("FL"), data.get((depth, base), {})
            rows.append([arch_name(a), str(receptive_field(a, depth)), acc(arms.get("CL")),
                         acc(arms.get("steps-matched CL")), acc(fl), gap(fl),
                         gap_change(arms, ref), paired(arms.get("steps-matched CL"), fl),
                         gap_change(arms, ref, "steps-matched CL"), rounds80(fl)])  # fmt: skip
        rows.sort(key=lambda r: r[-4] != "(baseline)")  # the baseline first
        if len(rows) > 1:
            out += [f"### The paper's remedies at depth {depth}: width and receptive field", "",
                table(["model", "RF", "CL", "steps-matched CL", "FL", "CL - FL", "change vs w8 k5",
                       "steps-matched CL - FL", "change vs w8 k5", "FL rounds to 80% of CL"],
                      rows), ""]  # fmt: skip

    rows = []
    for (depth, arch), arms in sorted(data.items()):
        a = dict(arch)
        if a["name"] != "plain_cnn" or a["kernel_size"] != "5" or a["stem_stride"] != "1":
            continue
        if a["skip"] != "False" or a["norm"] != "group" or a["norm_group_size"] != "0":
            continue
        if "steps-matched CL" not in arms or a["width"] not in ("8", "32"):
            continue
        fl = arms.get("FL")
        rows.append([str(depth), a["width"], acc(arms.get("CL")), acc(arms.get("steps-matched CL")),
                     acc(fl), gap(fl), paired(arms.get("steps-matched CL"), fl),
                     gap_change(arms, data.get((depth, base), {})),
                     gap_change(arms, data.get((depth, base), {}), "steps-matched CL")])  # fmt: skip
    rows.sort(key=lambda r: (int(r[0]), int(r[1])))
    if any(r[1] == "32" for r in rows):
        out += ["### Depth at widths 8 and 32 (plain CNN, kernel 5)", "",
                table(["depth", "width", "CL", "steps-matched CL", "FL", "CL - FL",
                       "steps-matched CL - FL", "CL - FL change vs width 8",
                       "steps-matched change vs width 8"], rows), ""]  # fmt: skip
    rows, rows80 = [], []
    for depth in sorted(d for d, a in data if a == base):
        arms = data[(depth, base)]
        one, forty, fl = (
            arms.get("FL, 1 local step"),
            arms.get("FL, 40 local steps"),
            arms.get("FL"),
        )
        one_m = arms.get("FL, 1 local step, server momentum 0.9")
        forty80 = arms.get("FL, 40 local steps x 80 rounds")
        cl, sm = arms.get("CL"), arms.get("steps-matched CL")
        if one or forty:
            rows.append([str(depth), acc(cl), acc(sm), acc(one_m), acc(one), acc(fl), acc(forty),
                         paired(sm, one_m), paired(sm, one), paired(one_m, fl), paired(one, fl),
                         paired(fl, forty), gap(one), gap(fl), gap(forty),
                         " / ".join(plateaued(a) for a in (one_m, one, fl, forty))])  # fmt: skip
        if forty80:
            rows80.append([str(depth), acc(cl), acc(sm), acc(fl), acc(forty80),
                           paired(forty80, fl), gap(fl), gap(forty80), paired(sm, forty80),
                           rounds80(fl), rounds80(forty80),
                           " / ".join(plateaued(a) for a in (fl, forty80))])  # fmt: skip
    if rows:
        out += ["### Local steps at 800 local steps in all (plain CNN, width 8, FedAvg)", "",
                "1 step x 800 rounds, 10 steps x 80 rounds (E1's FL) and 40 steps x 20 rounds: "
                "every client takes 800 steps of batch 36; steps-matched CL takes 800 of batch "
                "360. FL 1 step + SM: one local step and server momentum 0.9 (FedAvgM), which "
                "is steps-matched CL's algorithm (clients restart their optimizer each round, "
                "so plain FL 1 step has no momentum).", "",
                table(["depth", "CL", "steps-matched CL", "FL 1 step + SM", "FL 1 step",
                       "FL 10 steps", "FL 40 steps", "steps-matched CL - FL 1 + SM",
                       "steps-matched CL - FL 1", "FL 1 + SM - FL 10", "FL 1 - FL 10",
                       "FL 10 - FL 40", "CL - FL 1", "CL - FL 10", "CL - FL 40",
                       "certified (1 + SM / 1 / 10 / 40)"], rows), ""]  # fmt: skip
    if rows80:
        out += ["### Local steps at 80 rounds (plain CNN, width 8, FedAvg)", "",
                "10 steps a round (E1's FL) against 40 steps a round, both for 80 rounds: the 40-"
                "step arm does 4x the local computation. Steps-matched CL takes 800 steps of "
                "batch 360.", "",
                table(["depth", "CL", "steps-matched CL", "FL 10 steps", "FL 40 steps",
                       "FL 40 - FL 10", "CL - FL 10", "CL - FL 40", "steps-matched CL - FL 40",
                       "rounds to 80% of CL (10)", "rounds to 80% of CL (40)",
                       "certified (10 / 40)"], rows80), ""]  # fmt: skip
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compare_json")
    args = parser.parse_args(argv)
    with open(args.compare_json) as f:
        print(summary(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
