"""The report of a sweep's forks (:mod:`fedjax_deep.fl.forks`): the FL / null ratios, the averaging
penalty and the accuracy that averaging each layer costs, per depth and fork round, with intervals
over seeds.

    fedjax-deep forks RUNS_DIR [RUNS_DIR ...] --out DIR

``fedjax-deep train`` writes it into the workdir at the end of a sweep whose runs fork.
Reads the runs of sweeps trained with ``fl.fork_rounds`` or ``fl.fork_last`` (runs that do not
fork, such as a sweep's CL arms, are left out): their *finished* runs
(those with a ``summary.json``: every fork of the run is then in its rows; unfinished and stopped
runs are counted and skipped, so a partial sweep reports its finished seeds), grouped by
``model.depth``, one run per seed. Writes to ``--out``:

- ``forks.md``: per depth and fork round (n seeds), mean and 95% t-interval over seeds of
  (a) FL / null per layer, ``U_l`` (``fork/<layer>/update_ratio``) and linear CKA
  (``cka_ratio``), and over all layers (``fork/mean/...``: the ratio of the layer means, as the
  run logs it); (b) the averaging penalty (``eval/averaging_penalty``: the clients' mean test
  accuracy before averaging minus the averaged model's) at each fork round and at the last
  evaluation; (c) the cost of averaging layer ``l`` alone, ``prefix_0 - only_l`` (test accuracy
  of the clients' own models minus that of the models with layer ``l`` averaged), and the
  input-side against the output-side half (:func:`halves`): the paired difference of their costs,
  its p-value and Holm's adjusted p over every (depth, fork round) in the table; and a sentence
  per depth reading that interval;
- ``forks.json``: every per-seed value those tables use, by depth, seed and fork round;
- ``averaging_penalty.png``, ``layer_cost.png``, ``null_ratio_forks.png``.

Accuracies and costs are in points. A directory whose runs ran without forks, or a report in which
no depth has two finished seeds, is refused in one line (exit 2, nothing written); a depth with
one finished seed is listed in ``forks.md`` without numbers.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Mapping, Sequence

from fedjax_deep.analysis import plots
from fedjax_deep.analysis.runs import check_writable, curve, field_value, read_sweep, sweep_entries
from fedjax_deep.analysis.stats import fmt_ci, holm, interval, paired_interval
from fedjax_deep.errors import InputError

FILES = ("forks.md", "forks.json", "averaging_penalty.png", "layer_cost.png",
         "null_ratio_forks.png")  # fmt: skip
PENALTY = "eval/averaging_penalty"
WIDTH = 80  # the summary line's columns


def halves(num_layers: int) -> tuple[int, int, int | None]:
    """The two halves of ``num_layers`` layers (1-based, the head last) whose averaging costs are
    compared: ``h = floor(L / 2)`` layers each, the input side ``1..h`` (mix ``prefix_<h>``) and
    the output side ``L-h+1..L`` (mix ``suffix_<h>``), disjoint and of equal size; for odd ``L``
    the middle layer ``h + 1`` is in neither. Returns ``(h, first output-side layer, middle layer
    or None)``."""
    if num_layers < 2:
        raise ValueError(f"halves need at least 2 layers, got {num_layers}")
    h = num_layers // 2
    return h, num_layers - h + 1, (h + 1 if num_layers % 2 else None)


# -- reading --------------------------------------------------------------------------------------


def _fork_values(row: Mapping, layers: Sequence[str]) -> dict:
    """One fork row's values: per layer (forward order) the update and CKA ratios, their
    means over layers, every mix's accuracy and the penalty (None where not evaluated)."""

    def get(key):
        value = row.get(key)
        return None if value is None or not math.isfinite(value) else float(value)

    mixes = {k.split("/")[2]: get(k) for k in row if k.startswith("fork/mix/")}
    return {
        "update_ratio": [get(f"fork/{layer}/update_ratio") for layer in layers],
        "cka_ratio": [get(f"fork/{layer}/cka_ratio") for layer in layers],
        "mean_update_ratio": get("fork/mean/update_ratio"),
        "mean_cka_ratio": get("fork/mean/cka_ratio"),
        "mix": mixes,
        "penalty": get(PENALTY),
    }


def forks(config: Mapping) -> bool:
    """Whether a run's config forks (``fl.fork_rounds`` or ``fl.fork_last``)."""
    return bool(field_value(config, "fl.fork_rounds", missing=None)) or bool(
        field_value(config, "fl.fork_last", missing=None)
    )


def _forked(rows: Sequence[Mapping]) -> list[Mapping]:
    return [r for r in rows if any(k.startswith("fork/") for k in r)]


def collect(run_dirs: Sequence[str | pathlib.Path]) -> dict:
    """Every finished run of the sweeps in ``run_dirs``, by depth: ``{"depths": {depth: {"layers",
    "seeds": {seed: per-seed values}}}, "runs": total, "skipped": [names]}``. Raises an
    :class:`InputError` for a directory that ran without forks, for two runs of one depth and
    seed, and for runs of one depth that differ in another swept field."""
    depths: dict = {}
    settings: dict = {}
    total, skipped = 0, []
    for run_dir in run_dirs:
        root, runs = read_sweep(run_dir)
        if not runs:
            raise InputError(f"{run_dir} holds no runs yet; pass a sweep's --workdir once it runs")
        runs = [r for r in runs if forks(r["config"])]
        finished = [r for r in runs if r["summary"] is not None]
        if not runs or (finished and not any(_forked(r["rows"]) for r in finished)):
            raise InputError(f"{run_dir}: its runs hold no fork/ metrics (ran without "
                             "fl.fork_rounds); train with fl.fork_rounds or fl.fork_last, as "
                             "configs/e7/forks.py does")  # fmt: skip
        fields = [f for entry in sweep_entries(root) for f in entry
                  if f not in ("seed", "model.depth")]  # fmt: skip
        total += len(runs)
        skipped += [r["name"] for r in runs if r["summary"] is None]
        for run in finished:
            config = run["config"]
            depth, seed = int(field_value(config, "model.depth")), int(config["seed"])
            setting = tuple((f, str(field_value(config, f, missing=None))) for f in fields)
            if settings.setdefault(depth, setting) != setting:
                a, b = (", ".join(f"{f}={v}" for f, v in s) for s in (settings[depth], setting))
                raise InputError(f"depth {depth} has runs at {a} and at {b}: report one setting "
                                 "per depth (pass those sweeps separately)")  # fmt: skip
            layers = list(run["run_info"].get("layers") or [])
            group = depths.setdefault(depth, {"layers": layers, "seeds": {}})
            if seed in group["seeds"]:
                raise InputError(f"depth {depth}, seed {seed} is in two runs "
                                 f"({group['seeds'][seed]['run']}, {run['name']}): pass each "
                                 "sweep once")  # fmt: skip
            rounds, penalty = curve(run["rows"], PENALTY)
            group["seeds"][seed] = {
                "run": f"{pathlib.Path(run_dir).name}/{run['name']}",
                "penalty": {"rounds": rounds.tolist(), "points": (100 * penalty).tolist()},
                "forks": {int(r["round"]): _fork_values(r, layers) for r in _forked(run["rows"])},
            }
    return {"depths": dict(sorted(depths.items())), "runs": total, "skipped": skipped}


# -- intervals ------------------------------------------------------------------------------------


def _points(values) -> list:
    return [None if v is None else 100 * v for v in values]


def analyse(data: Mapping) -> dict:
    """The tables' intervals from :func:`collect`'s per-seed values: per depth with at least two
    seeds and per fork round, the ratios, the penalty, each layer's cost and the half test (with
    Holm's p over every half test); depths with fewer seeds under ``"too_few"``."""
    out: dict = {"depths": {}, "too_few": {}}
    for depth, group in data["depths"].items():
        seeds = sorted(group["seeds"])
        if len(seeds) < 2:
            out["too_few"][depth] = seeds
            continue
        per_seed = [group["seeds"][s] for s in seeds]
        layers = group["layers"]
        num_layers = len(layers)
        h, out_first, middle = halves(num_layers)
        rounds = sorted({r for s in per_seed for r in s["forks"]})
        last = [s["penalty"]["rounds"][-1] if s["penalty"]["rounds"] else None for s in per_seed]
        result = {"layers": layers, "seeds": seeds,
                  "halves": {"h": h, "input": [1, h], "output": [out_first, num_layers],
                             "middle": middle},
                  "last_eval": {"rounds": last, "penalty": interval(
                      [s["penalty"]["points"][-1] if s["penalty"]["points"] else None
                       for s in per_seed])},
                  "forks": {}}  # fmt: skip
        for r in rounds:
            have = [(seed, s["forks"][r]) for seed, s in zip(seeds, per_seed, strict=True)
                    if r in s["forks"]]  # fmt: skip
            f = [v for _, v in have]

            def mix(name, f=f):
                return _points([v["mix"].get(name) for v in f])

            own = mix("prefix_0")
            result["forks"][r] = {
                "seeds": [seed for seed, _ in have],
                "update_ratio": [interval([v["update_ratio"][i] for v in f])
                                 for i in range(num_layers)],
                "cka_ratio": [interval([v["cka_ratio"][i] for v in f]) for i in range(num_layers)],
                "mean_update_ratio": interval([v["mean_update_ratio"] for v in f]),
                "mean_cka_ratio": interval([v["mean_cka_ratio"] for v in f]),
                "penalty": interval(_points([v["penalty"] for v in f])),
                "layer_cost": [paired_interval(own, mix(f"only_{i + 1}"))
                               for i in range(num_layers)],
                "input_cost": paired_interval(own, mix(f"prefix_{h}")),
                "output_cost": paired_interval(own, mix(f"suffix_{h}")),
                # input-side cost minus output-side cost = suffix_h - prefix_h
                "input_minus_output": paired_interval(mix(f"suffix_{h}"), mix(f"prefix_{h}")),
            }  # fmt: skip
        out["depths"][depth] = result
    tests = [t["input_minus_output"] for d in out["depths"].values() for t in d["forks"].values()]
    finite = [t for t in tests if math.isfinite(t["p"])]
    for t, p in zip(finite, holm([t["p"] for t in finite]) if finite else [], strict=True):
        t["holm"] = float(p)
    return out


# -- forks.md -------------------------------------------------------------------------------------


def _ci(stat: Mapping, digits: int = 1) -> str:
    return fmt_ci(stat["mean"], stat["half"], 1.0, digits)


def _p(x) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.2g}" if x >= 1e-4 else f"{x:.1e}"


def _span(a: int, b: int) -> str:
    return f"{a}" if a == b else f"{a}-{b}"


def _layers(a: int, b: int) -> str:
    return f"layer {a}" if a == b else f"layers {a}-{b}"


def sentence(depth: int, result: Mapping) -> str:
    """What the half test's intervals say at one depth, round by round."""
    hv = result["halves"]
    parts = []
    for r, f in result["forks"].items():
        t = f["input_minus_output"]
        if not math.isfinite(t["half"]):
            parts.append(f"round {r}: no interval (n={t['n']})")
            continue
        where = "excludes 0" if t["resolved"] else "includes 0"
        holm_p = t.get("holm")
        kept = "survives Holm" if holm_p is not None and holm_p < 0.05 else "does not survive Holm"
        parts.append(f"round {r} {t['mean']:+.1f} ± {t['half']:.1f} ({where}; Holm p "
                     f"{_p(holm_p)}: {kept})")  # fmt: skip
    return (f"Depth {depth} ({len(result['seeds'])} seeds): the cost of averaging the input side "
            f"({_layers(*hv['input'])}) minus that of the output side "
            f"({_layers(*hv['output'])}), in points: " + "; ".join(parts) + ".")  # fmt: skip


def markdown(data: Mapping, result: Mapping, sources: Sequence[str]) -> str:
    """The report: the ratios, the penalty, the per-layer costs, the half tests and a sentence
    per depth."""
    depths = result["depths"]
    out = [
        "# Forks: FL / null, the averaging penalty and what averaging each layer costs",
        "",
        f"Written by `fedjax-deep forks` from {', '.join(f'`{s}`' for s in sources)}: "
        f"{_count(data, result)}. Mean and 95% t-interval over seeds (n per round); accuracies "
        "and costs in points of test accuracy (the mean over the clients).",
        "",
    ]
    for depth, seeds in result["too_few"].items():
        out += [f"Depth {depth}: {len(seeds)} finished seed ({', '.join(map(str, seeds))}); "
                "intervals need at least 2, so no numbers.", ""]  # fmt: skip
    out += ["## (a) FL / null per layer: U_l (update dispersion) and linear CKA", "",
            "FL's clients over the null's (clients on the whole training set, same start, steps "
            "and batch) at each fork round; 1 = the null's. The last row: the ratio of the "
            "means over layers.", ""]  # fmt: skip
    for depth, d in depths.items():
        rounds = list(d["forks"])
        ns = ", ".join(f"round {r}: n={len(d['forks'][r]['seeds'])}" for r in rounds)
        out += [f"### Depth {depth} ({ns})", "",
                "| l | layer | " + " | ".join(f"U_l r{r}" for r in rounds) + " | "
                + " | ".join(f"CKA r{r}" for r in rounds) + " |",
                "|" + "---|" * (2 + 2 * len(rounds))]  # fmt: skip
        for i, layer in enumerate(d["layers"]):
            cells = [_ci(d["forks"][r]["update_ratio"][i], 2) for r in rounds]
            cells += [_ci(d["forks"][r]["cka_ratio"][i], 2) for r in rounds]
            out.append(f"| {i + 1} | {layer} | " + " | ".join(cells) + " |")
        cells = [_ci(d["forks"][r]["mean_update_ratio"], 2) for r in rounds]
        cells += [_ci(d["forks"][r]["mean_cka_ratio"], 2) for r in rounds]
        out += ["| all | mean | " + " | ".join(cells) + " |", ""]
    out += ["## (b) The averaging penalty (clients' mean accuracy before averaging minus the "
            "averaged model's, points)", "", "| depth | round | n | penalty |", "|---|---|---|---|"]  # fmt: skip
    for depth, d in depths.items():
        for r, f in d["forks"].items():
            out.append(f"| {depth} | {r} (fork) | {f['penalty']['n']} | {_ci(f['penalty'])} |")
        last = sorted({r for r in d["last_eval"]["rounds"] if r is not None})
        lp = d["last_eval"]["penalty"]
        out.append(f"| {depth} | {', '.join(map(str, last))} (last evaluation) | {lp['n']} | "
                   f"{_ci(lp)} |")  # fmt: skip
    out += ["", "## (c) The cost of averaging a layer alone: prefix_0 - only_l (points)", "",
            "The clients' own models' accuracy minus that of the same models with layer l's "
            "weights (and its normalization) replaced by the average; layer 1 is next to the "
            "input, the last the head.", ""]  # fmt: skip
    for depth, d in depths.items():
        rounds = list(d["forks"])
        out += [f"### Depth {depth}", "", "| l | layer | " + " | ".join(f"round {r}" for r in rounds)
                + " |", "|" + "---|" * (2 + len(rounds))]  # fmt: skip
        for i, layer in enumerate(d["layers"]):
            cells = [_ci(d["forks"][r]["layer_cost"][i]) for r in rounds]
            out.append(f"| {i + 1} | {layer} | " + " | ".join(cells) + " |")
        out.append("")
    out += ["## Does averaging the input-side half cost more than the output-side half?", "",
            "Halves of h = floor(L/2) layers each (L layers with the head): the input side, "
            "layers 1..h (mix prefix_h), and the output side, layers L-h+1..L (mix suffix_h); for "
            "odd L the middle layer is in neither. Cost = prefix_0 minus the mix; input - output "
            "= suffix_h - prefix_h, paired over seeds; p: two-sided paired t-test; Holm: adjusted "
            "over every row of this table that has a p (2 seeds or more).", "",
            "| depth | round | n | input half | cost | output half | cost | input - output | p | "
            "Holm p |", "|" + "---|" * 10]  # fmt: skip
    for depth, d in depths.items():
        hv = d["halves"]
        for r, f in d["forks"].items():
            t = f["input_minus_output"]
            out.append(f"| {depth} | {r} | {t['n']} | {_span(*hv['input'])} | "
                       f"{_ci(f['input_cost'])} | {_span(*hv['output'])} | "
                       f"{_ci(f['output_cost'])} | {_ci(t)} | {_p(t['p'])} | "
                       f"{_p(t.get('holm'))} |")  # fmt: skip
    out += [""] + [sentence(depth, d) for depth, d in depths.items()]
    return "\n".join(out) + "\n"


def _count(data: Mapping, result: Mapping) -> str:
    finished = sum(len(g["seeds"]) for g in data["depths"].values())
    per = ", ".join(f"{d}: {len(g['seeds'])}" for d, g in data["depths"].items())
    return (f"{finished} of {data['runs']} runs finished (seeds per depth: {per}); "
            f"{len(data['skipped'])} unfinished or stopped, skipped")  # fmt: skip


# -- figures --------------------------------------------------------------------------------------


def _colors(keys: Sequence) -> dict:
    cmap = plots.pyplot().get_cmap("viridis")
    return {k: cmap(i / max(1, len(keys) - 1) * 0.9) for i, k in enumerate(keys)}


def plot_penalty(data: Mapping, result: Mapping, path: pathlib.Path) -> str:
    """The averaging penalty against the round, one line per depth (mean over seeds, band: the
    seeds' range)."""
    fig, axes = plots.panel_grid(1, 5.0, 3.4)
    ax = axes[0, 0]
    colors = _colors(list(result["depths"]))
    for depth in result["depths"]:
        runs = data["depths"][depth]["seeds"].values()
        rounds = min((s["penalty"]["rounds"] for s in runs), key=len)
        plots.seed_band(ax, rounds, [s["penalty"]["points"] for s in runs], colors[depth],
                        f"depth {depth} ({len(runs)} seeds)")  # fmt: skip
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xlabel("round")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("averaging penalty (points)")
    plots.panel_title(ax, "Clients' mean test accuracy before averaging minus the averaged "
                      "model's (mean over seeds; band: the seeds' range)", 8)  # fmt: skip
    ax.grid(alpha=0.3)
    plots.legend_outside(ax)
    return plots.save(fig, path)


def _per_layer_panels(result, path, stat: str, ylabel: str, title: str, unit: float) -> list[str]:
    depths = list(result["depths"].items())

    def draw(ax, item):
        depth, d = item
        colors = _colors(list(d["forks"]))
        x = list(range(1, len(d["layers"]) + 1))
        for r, f in d["forks"].items():
            columns = [s["per_seed"] for s in f[stat]]  # [L][seeds], a seed's nan dropped
            if len({len(c) for c in columns}) == 1 and len(columns[0]) == len(f["seeds"]):
                plots.seed_band(ax, x, [list(row) for row in zip(*columns, strict=True)],
                                colors[r], f"fork at round {r}")  # fmt: skip
            else:  # a seed lacks a layer's value: the means alone
                ax.plot(x, [s["mean"] for s in f[stat]], "-o", ms=3, color=colors[r],
                        label=f"fork at round {r}")  # fmt: skip
        ax.axhline(unit, color="gray", lw=0.8)
        ax.set_xlabel("layer l (1 = input side, last = head)")
        ax.set_xticks(x if len(x) <= 9 else x[::2])
        plots.panel_title(
            ax, f"depth {depth}: {title} ({len(d['seeds'])} seeds; band: the seeds' range)", 8
        )
        ax.grid(alpha=0.3)

    return plots.panels(path, depths, draw, ylabel=ylabel)


def plot_layer_cost(result: Mapping, path: pathlib.Path) -> list[str]:
    """Per depth, the cost of averaging layer l alone against l, one line per fork round."""
    return _per_layer_panels(result, path, "layer_cost", "cost of averaging layer l (points)",
                             "own model minus layer l averaged", 0.0)  # fmt: skip


def plot_null_ratio(result: Mapping, path: pathlib.Path) -> list[str]:
    """Per depth, FL / null ``U_l`` against l, one line per fork round; a line at 1."""
    return _per_layer_panels(result, path, "update_ratio", "FL / null update dispersion U_l",
                             "FL / null U_l", 1.0)  # fmt: skip


# -- the command ----------------------------------------------------------------------------------


def _plain(value):
    """JSON without NaN: nan and inf as None, dict keys as strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def write_forks_report(run_dirs: Sequence[str], out: pathlib.Path) -> tuple[list[str], str]:
    """Reads, checks, writes ``FILES`` into ``out``; returns the files written and a summary line
    of at most 80 columns. An :class:`InputError` (nothing written) for what cannot be reported."""
    run_dirs = [str(d) for d in run_dirs]
    out = pathlib.Path(out)
    data = collect(run_dirs)
    if not data["depths"]:
        raise InputError(f"no finished run (with a summary.json) in {', '.join(run_dirs)} yet; "
                         "rerun once a seed of the sweep has finished")  # fmt: skip
    result = analyse(data)
    if not result["depths"]:
        few = ", ".join(f"depth {d}: {len(s)}" for d, s in result["too_few"].items())
        raise InputError(f"fewer than 2 finished seeds at every depth ({few}): intervals need a "
                         "sweep over seeds; rerun when more seeds have finished")  # fmt: skip
    check_writable(out, FILES, "pass another --out")
    sources = [str(pathlib.Path(d)) for d in run_dirs]
    (out / "forks.md").write_text(markdown(data, result, sources))
    record = {"sources": sources, "runs": data["runs"], "skipped": data["skipped"],
              "per_seed": data["depths"], "tables": result}  # fmt: skip
    (out / "forks.json").write_text(json.dumps(_plain(record), indent=1) + "\n")
    written = ["forks.md", "forks.json", plot_penalty(data, result, out / "averaging_penalty.png")]
    written += plot_layer_cost(result, out / "layer_cost.png")
    written += plot_null_ratio(result, out / "null_ratio_forks.png")
    line = (f"forks: {_count(data, result).split(' (')[0]}, depths "
            f"{' '.join(map(str, result['depths']))}; {len(written)} files")  # fmt: skip
    return written, line[:WIDTH]
