"""A sweep of R members in one compiled program against R separate runs, measured side by side.

    python benchmarks/bench_sweep.py [--jobs main,grid,throughput] [--tiny] [--out benchmarks/results]

Two parts, both on whatever backend JAX finds:

1. **End to end** (``main``: the 5-round depth sweep that was the README's main job until issue 14, experiments/depth_divergence/configs/e1/depth.py, 24 runs in 8
   shape groups; ``grid``: a learning-rate x seed grid, 4 x 3 = 12 members of one shape). Each arm
   is the real command, ``fedjax-deep train --no-progress`` in a fresh process and a fresh workdir,
   timed from start to exit (imports, data, compilation, training, files, report). Arms:
   ``before`` (one program per point and no persistent compilation cache: what the project did
   before the sweep axis), ``separate+cache`` (one program per point, a cold cache: points of one
   shape load the first one's program), ``map`` and ``vmap`` (members on one sweep axis, a cold
   cache), and ``map+warm cache`` (the same command again in a new workdir: a rerun that compiles
   nothing). Arms run one after another; ``--repeats`` alternates them.
2. **Throughput** (``throughput``): R members of a small model (MNIST-1D shape, plain CNN of depth
   8, 10 clients, 4 local steps of 32) in one program under ``vmap`` and ``map``, against one
   member alone: steady-state rounds per second (median of timed rounds after compilation),
   reported as member-rounds per second and as a multiple of one member's rate (R x 1.0 would be
   perfect scaling on an idle accelerator; about 1.0 is expected on a CPU that one member fills).

Writes ``bench_sweep.json`` and ``bench_sweep.md`` under ``--out`` (nothing when empty).
``--tiny`` shrinks every job to seconds (the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARMS = {
    "before": ["--config.sweep_axis=off", "--config.compile_cache=off"],
    "separate+cache": ["--config.sweep_axis=off", "--config.compile_cache={cold}"],
    "map": ["--config.sweep_axis=auto", "--config.compile_cache={cold}"],
    "vmap": ["--config.sweep_axis=on", "--config.compile_cache={cold}"],
    "map+warm cache": ["--config.sweep_axis=auto", "--config.compile_cache={warm}"],
}


def _jobs(tiny: bool) -> dict[str, tuple[str, list[str]]]:
    if tiny:
        small = ["--config.num_rounds=2", "--config.data.name=digits", "--config.fl.num_clients=4",
                 "--config.fl.local_epochs=1"]  # fmt: skip
        return {
            "main": ("experiments/depth_divergence/configs/e1/depth.py", [*small, "--config.sweep=(('model.depth', (2, 4)), ('seed', (0, 1)))"]),
            "grid": ("configs/digits_tiny.py", ["--config.sweep=(('client_opt.learning_rate', (0.05, 0.02)), ('seed', (0, 1)))"]),
        }  # fmt: skip
    grid = ("(('client_opt.learning_rate', (0.003, 0.01, 0.03, 0.1)), ('seed', (0, 1, 2)))",)
    return {
        "main": ("experiments/depth_divergence/configs/e1/depth.py", []),
        "grid": ("experiments/depth_divergence/configs/e1/depth.py", ["--config.mode=fl", "--config.model.depth=8",
                                                 f"--config.sweep={grid[0]}"]),
    }  # fmt: skip


def end_to_end(job, config, extra, repeats: int, scratch: pathlib.Path, arms=tuple(ARMS)):
    """Wall seconds of each arm's command (list per repeat)."""
    results: dict[str, list[float]] = {arm: [] for arm in arms}
    for rep in range(repeats):
        warm = scratch / f"{job}-map-cache-{rep}"  # filled by the cold 'map' arm before it
        for arm, flags in ((a, ARMS[a]) for a in arms):
            slug = arm.replace(" ", "-").replace("+", "-")
            workdir = scratch / f"{job}-{slug}-{rep}"
            cold = scratch / f"{job}-{slug}-cache-{rep}"
            flags = [f.format(cold=cold, warm=warm) for f in flags]
            cmd = [sys.executable, "-m", "fedjax_deep.cli", "train", "--config", str(ROOT / config),
                   "--workdir", str(workdir), "--no-progress", *extra, *flags]  # fmt: skip
            start = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            seconds = time.perf_counter() - start
            if done.returncode:
                raise SystemExit(f"{job}/{arm} failed ({done.returncode}):\n{done.stderr[-3000:]}")
            results[arm].append(seconds)
            print(f"{job:5s} {arm:16s} repeat {rep + 1}: {seconds:7.1f} s", flush=True)
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def throughput(members: int, rounds: int, tiny: bool) -> dict:
    """Steady-state member-rounds per second of R members under vmap and map vs one member."""
    import jax

    from experiments.depth_divergence.common import cpu_mnist1d
    from fedjax_deep import experiment
    from fedjax_deep.config import default_config
    from fedjax_deep.fl import stack_members, sweep_over_members

    def build(seed: int, lr: float):
        c = default_config() if tiny else cpu_mnist1d(depth=8)
        c.seed, c.client_opt.learning_rate = seed, lr
        c.fl.local_steps, c.fl.divergence = 4, False
        if tiny:
            c.fl.num_clients, c.model.depth = 4, 2
        return experiment.build(c, experiment.prepare(c, cache), device_cache)

    cache, device_cache = {}, {}
    runs = [build(seed, lr) for seed in range(members) for lr in (0.01,)][:members]
    out = {}

    def timed(fn, state, data, keys):
        step = jax.jit(fn, donate_argnums=0)
        state = jax.tree.map(jax.numpy.copy, state)  # the caller's arrays stay alive
        state, _ = step(state, data, keys(0))  # compile + one round
        jax.block_until_ready(state)
        times = []
        for r in range(1, rounds + 1):
            t0 = time.perf_counter()
            state, metrics = step(state, data, keys(r))
            jax.block_until_ready((state, metrics))
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    one = runs[0]
    data0 = one.round_inputs(0)[0]
    t_one = timed(one.round_fn, one.state, data0, lambda r: one.round_inputs(r)[1])
    out["one member"] = {"members": 1, "seconds_per_round": t_one, "member_rounds_per_s": 1 / t_one}
    datas = stack_members([run.round_inputs(0)[0] for run in runs])
    for how in ("vmap", "map"):
        fn = sweep_over_members(one.round_fn, how, (0, 0, 0))
        state = stack_members([run.state for run in runs])

        def keys(r):
            return stack_members([run.round_inputs(r)[1] for run in runs])

        t = timed(fn, state, datas, keys)
        out[how] = {
            "members": members,
            "seconds_per_round": t,
            "member_rounds_per_s": members / t,
            "x_one_member": members * t_one / t,
        }
    for name, row in out.items():
        print(f"throughput {name:10s}: {row['member_rounds_per_s']:8.2f} member-rounds/s"
              + (f" = {row['x_one_member']:.2f}x one member" if "x_one_member" in row else ""),
              flush=True)  # fmt: skip
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", default="main,grid,throughput")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--arms", default=",".join(ARMS), help="a subset of: " + ", ".join(ARMS))
    parser.add_argument("--members", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds (throughput)")
    parser.add_argument("--tiny", action="store_true", help="seconds, not minutes (for tests)")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    import jax

    jobs = args.jobs.split(",")
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "jax": jax.__version__,
        "end_to_end": {},
    }
    with tempfile.TemporaryDirectory() as scratch:
        for job, (config, extra) in _jobs(args.tiny).items():
            if job in jobs:
                arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
                unknown = [a for a in arms if a not in ARMS]
                if unknown:
                    raise SystemExit(f"--arms: unknown {unknown}; use some of {', '.join(ARMS)}")
                wall = end_to_end(job, config, extra, args.repeats, pathlib.Path(scratch), arms)
                report["end_to_end"][job] = {"config": config, "overrides": extra, "seconds": wall}
    if "throughput" in jobs:
        members = 2 if args.tiny else args.members
        report["throughput"] = throughput(members, 2 if args.tiny else args.rounds, args.tiny)
    lines = _markdown(report)
    print("\n".join(lines))
    if args.out:
        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_sweep.json").write_text(json.dumps(report, indent=1) + "\n")
        (out / "bench_sweep.md").write_text("\n".join(lines) + "\n")


def _markdown(report: dict) -> list[str]:
    lines = [f"Measured {report['date']} on {report['backend']} ({report['device']}, "
             f"{report['cpu_count']} cores), jax {report['jax']}.", ""]  # fmt: skip
    if report["end_to_end"]:
        lines += ["| job | arm | wall s (each repeat) | speed-up vs the first arm |",
                  "|---|---|---|---|"]  # fmt: skip
        for job, res in report["end_to_end"].items():
            base = "before" if "before" in res["seconds"] else next(iter(res["seconds"]))
            before = statistics.median(res["seconds"][base])
            for arm, secs in res["seconds"].items():
                m = statistics.median(secs)
                each = ", ".join(f"{s:.1f}" for s in secs)
                lines.append(f"| {job} | {arm} | {each} | {before / m:.2f}x |")
        lines.append("")
    if "throughput" in report:
        lines += ["| throughput | members | s / round | member-rounds / s | x one member |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for name, row in report["throughput"].items():
            x = f"{row['x_one_member']:.2f}" if "x_one_member" in row else "1 (reference)"
            lines.append(f"| {name} | {row['members']} | {row['seconds_per_round']:.4f} | "
                         f"{row['member_rounds_per_s']:.2f} | {x} |")  # fmt: skip
    return lines


if __name__ == "__main__":
    main()
