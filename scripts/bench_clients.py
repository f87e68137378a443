"""Client-parallel execution against the per-client loops, side by side in one run.

    python scripts/bench_clients.py [--clients 1,4,16,64] [--models digits,cifar] [--out DIR]
                                    [--host-devices N] [--repeats 5] [--no-torch] [--memory-check]

For each model (the digits CNN on 8x8x1; a CIFAR-shape CNN on 32x32x3) and each cohort size C, every
variant trains C clients for S local steps of B examples from the same start (examples per second,
best of ``--repeats`` timings taken round-robin across the variants so that a shared machine's drift
hits all alike; the ratio column is our best strategy's rate over the row's):

- ours: the jitted round (``fedjax_deep.make_round``) under each execution strategy (vmap, chunks of
  4, one client at a time, sharded when there are several devices, and ``auto``), divergence off;
  plus ``auto`` with the divergence metrics on;
- jitted per-client loop: a Python loop over clients and local steps calling one jitted SGD step
  (how FedJAX runs clients), with XLA's own convolution and with ours;
- PyTorch per-client loop: the same network, optimizer and data, clients one after another (how most
  FL research code and process-based simulators run). Needs torch (the ``bench`` extra);
- one model on C x B examples per step: the same FLOPs with no client axis.

It also measures the machine's dense matrix-product GFLOP/s, our achieved GFLOP/s (model FLOPs from
XLA's cost analysis of one training step), compile times and XLA's memory estimate. ``--memory-check``
runs 1,000 digits-CNN clients in one chunked round in a subprocess and reports its peak RSS.
Results go to ``DIR/bench_clients.json`` and ``DIR/bench_clients.md``. It runs unchanged on GPU and
TPU (PyTorch stays on the CPU there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time


def _parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", default="1,4,16,64")
    p.add_argument("--models", default="digits,cifar,resnet18")
    p.add_argument("--resnet18-clients", default="4", help="ResNet-18 is slow on CPU: fewer C")
    p.add_argument("--local-steps", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--host-devices", type=int, default=0, help="split the CPU into N XLA devices")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--memory-check", action="store_true", help="also run 1,000 digits clients")
    p.add_argument("--memory-clients", type=int, default=1000)
    p.add_argument("--memory-chunk", type=int, default=25)
    p.add_argument("--out", default="docs/bench")
    p.add_argument("--_memory-child", dest="memory_child", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


ARGS = _parse_args()
if ARGS.host_devices:
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + f" --xla_force_host_platform_device_count={ARGS.host_devices}"
    )

import jax  # noqa: E402  (XLA_FLAGS must be set first)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from fedjax_deep.aggregation import fedavg  # noqa: E402
from fedjax_deep.config import default_config  # noqa: E402
from fedjax_deep.data import ClientData  # noqa: E402
from fedjax_deep.fl import init_server_state, make_round  # noqa: E402
from fedjax_deep.fl.client import make_loss_fn  # noqa: E402
from fedjax_deep.fl.execution import (  # noqa: E402
    choose_execution,
    place_round_inputs,
)
from fedjax_deep.models import build_model  # noqa: E402

LR, MOMENTUM, WD = 0.01, 0.9, 5e-4


def model_specs():
    """The two benchmark networks: (name, input shape, plain-CNN overrides)."""
    return {
        "digits": ((8, 8, 1), dict(depth=4, width=32)),
        "cifar": ((32, 32, 3), dict(depth=4, widths=(32, 64, 128, 128), strides=(1, 2, 2, 2))),
        "resnet18": ((32, 32, 3), dict(name="resnet", depth=18, norm="batch")),  # CIFAR stem
    }


def _model(name, conv_impl="im2col"):
    shape, overrides = model_specs()[name]
    cfg = default_config().model
    for k, v in overrides.items():
        cfg[k] = v
    cfg.conv_impl = conv_impl
    model, params, state = build_model(cfg, shape, 10, jax.random.key(0))
    return cfg, shape, model, params, state


def _client_opt():
    return optax.chain(optax.add_decayed_weights(WD), optax.sgd(LR, momentum=MOMENTUM))


def _timeit(fn, repeats):
    """Median seconds of ``fn()`` (which must block) after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _data(shape, num_clients, num_steps, batch):
    n = num_steps * batch
    rng = np.random.default_rng(0)
    x = rng.standard_normal((num_clients, n, *shape), dtype=np.float32)
    y = rng.integers(0, 10, (num_clients, n)).astype(np.int32)
    return x, y


def _memory_bytes(compiled):
    try:
        m = compiled.memory_analysis()
        return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes)
    except Exception:  # not every backend reports it
        return None


def bench_ours(name, num_clients, args, strategy, chunk=0, divergence=False):
    cfg, shape, model, params, state = _model(name)
    x, y = _data(shape, num_clients, args.local_steps, args.batch_size)
    data = ClientData(
        x=jnp.asarray(x),
        y=jnp.asarray(y),
        num_examples=jnp.full((num_clients,), x.shape[1], jnp.int32),
        client_ids=jnp.arange(num_clients, dtype=jnp.int32),
    )
    execution, why = choose_execution(strategy, num_clients, chunk_size=chunk)
    rule = fedavg(optax.sgd(1.0))
    round_fn = make_round(
        model,
        _client_opt(),
        rule,
        batch_size=args.batch_size,
        num_local_steps=args.local_steps,
        divergence=divergence,
        execution=execution,
    )
    server = init_server_state(params, state, rule)
    if execution.mesh is not None:
        from fedjax_deep.fl.execution import pad_clients

        data = pad_clients(data, execution.num_shards)
    server, data = place_round_inputs(execution, server, data)
    key = jax.random.key(0)
    if execution.mesh is not None:
        from fedjax_deep.fl.execution import replicate

        key = replicate(key, execution.mesh)
    t = time.perf_counter()
    compiled = jax.jit(round_fn).lower(server, data, key).compile()
    compile_s = time.perf_counter() - t
    holder = {"state": server}

    def run():
        holder["state"], metrics = compiled(holder["state"], data, key)
        jax.block_until_ready(metrics)

    run()
    info = {"compile_seconds": compile_s, "memory_bytes": _memory_bytes(compiled), "execution": why}
    return run, info


def _single_step(model, opt):
    loss_fn = make_loss_fn(model)

    def step(params, model_state, opt_state, batch):
        grads, (model_state, _, _) = jax.grad(loss_fn, has_aux=True)(params, model_state, batch)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), model_state, opt_state

    return step


def flops_per_example(name, args):
    """Training FLOPs per example from XLA's cost analysis of one single-client SGD step."""
    cfg, shape, model, params, state = _model(name, "native")
    opt = _client_opt()
    batch = {
        "x": jnp.zeros((args.batch_size, *shape)),
        "y": jnp.zeros((args.batch_size,), jnp.int32),
        "mask": jnp.ones((args.batch_size,), bool),
    }
    compiled = (
        jax.jit(_single_step(model, opt)).lower(params, state, opt.init(params), batch).compile()
    )
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost["flops"]) / args.batch_size


def bench_jax_loop(name, num_clients, args, conv_impl):
    """FedJAX-style: a Python loop over clients and steps around one jitted SGD step."""
    cfg, shape, model, params, state = _model(name, conv_impl)
    opt = _client_opt()
    step = jax.jit(_single_step(model, opt))
    x, y = _data(shape, num_clients, args.local_steps, args.batch_size)
    b = args.batch_size
    batches = [
        [
            {
                "x": jnp.asarray(x[c, s * b : (s + 1) * b]),
                "y": jnp.asarray(y[c, s * b : (s + 1) * b]),
                "mask": jnp.ones((b,), bool),
            }
            for s in range(args.local_steps)
        ]
        for c in range(num_clients)
    ]
    accumulate = jax.jit(lambda acc, p, w: jax.tree.map(lambda a, q: a + w * q, acc, p))
    weight = 1.0 / num_clients

    def run():
        total = jax.tree.map(jnp.zeros_like, params)
        for c in range(num_clients):
            p, ms, o = params, state, opt.init(params)
            for s in range(args.local_steps):
                p, ms, o = step(p, ms, o, batches[c][s])
            total = accumulate(total, p, weight)
        jax.block_until_ready(total)

    t = time.perf_counter()
    run()
    return run, {"compile_seconds": time.perf_counter() - t}


def bench_one_model(name, num_clients, args):
    """One model, C x B examples per step, S steps (a jitted step in a Python loop)."""
    cfg, shape, model, params, state = _model(name, "native")
    opt = _client_opt()
    step = jax.jit(_single_step(model, opt))
    x, y = _data(shape, 1, args.local_steps, args.batch_size * num_clients)
    big = args.batch_size * num_clients
    batches = [
        {
            "x": jnp.asarray(x[0, s * big : (s + 1) * big]),
            "y": jnp.asarray(y[0, s * big : (s + 1) * big]),
            "mask": jnp.ones((big,), bool),
        }
        for s in range(args.local_steps)
    ]

    def run():
        p, ms, o = params, state, opt.init(params)
        for s in range(args.local_steps):
            p, ms, o = step(p, ms, o, batches[s])
        jax.block_until_ready(p)

    run()
    return run, {}


def _torch_resnet18_cifar():
    import torch
    from torch import nn

    class Basic(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.short = None
            if stride != 1 or cin != cout:
                self.short = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
            return torch.relu(y + (x if self.short is None else self.short(x)))

    layers = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    cin = 64
    for s, planes in enumerate((64, 128, 256, 512)):
        for b in range(2):
            layers.append(Basic(cin, planes, 2 if (s > 0 and b == 0) else 1))
            cin = planes
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10)]
    torch.manual_seed(0)
    return nn.Sequential(*layers)


def _torch_model(name):
    import torch
    from torch import nn

    if name == "resnet18":
        return _torch_resnet18_cifar()
    shape, overrides = model_specs()[name]
    depth = overrides["depth"]
    widths = overrides.get("widths") or (overrides["width"],) * depth
    strides = overrides.get("strides") or (1,) * depth
    layers, cin, spatial = [], shape[-1], shape[0]
    for w, s in zip(widths, strides, strict=True):
        layers += [
            nn.Conv2d(cin, w, 3, stride=s, padding=1, bias=False),
            nn.GroupNorm(8, w),
            nn.ReLU(),
        ]
        cin, spatial = w, -(-spatial // s)
    layers += [nn.Flatten(), nn.Linear(cin * spatial * spatial, 10)]
    torch.manual_seed(0)
    return nn.Sequential(*layers)


def bench_torch_loop(name, num_clients, args):
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    shape, _ = model_specs()[name]
    server = _torch_model(name)
    x, y = _data(shape, num_clients, args.local_steps, args.batch_size)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3)))  # NCHW
    yt = torch.from_numpy(y.astype(np.int64))
    b = args.batch_size
    loss_fn = torch.nn.CrossEntropyLoss()
    model = _torch_model(name)
    start = {k: v.clone() for k, v in server.state_dict().items()}

    def run():
        total = {k: torch.zeros_like(v) for k, v in start.items()}
        for c in range(num_clients):
            model.load_state_dict(start)
            opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
            for s in range(args.local_steps):
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xt[c, s * b : (s + 1) * b]), yt[c, s * b : (s + 1) * b])
                loss.backward()
                opt.step()
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    if v.is_floating_point():
                        total[k] += v / num_clients
                    else:  # BatchNorm's num_batches_tracked counter
                        total[k] = v.clone()

    run()
    return run, {"torch": torch.__version__}


def interleaved(runners, repeats):
    """Times every runner ``repeats`` times, round-robin, so that a shared machine's drifts in
    speed hit every variant alike; returns ``{name: info + {'seconds': median}}``."""
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, (run, _) in runners.items():
            t = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t)
    # Best of the repeats: on a shared machine interference only ever slows a run down.
    return {
        name: {
            **info,
            "seconds": min(times[name]),
            "median_seconds": statistics.median(times[name]),
            "all_seconds": times[name],
        }
        for name, (_, info) in runners.items()
    }


def dense_gflops(repeats):
    """The machine's dense f32 matrix-product rate (best of a few sizes), GFLOP/s."""
    best = 0.0
    for n in (512, 1024, 2048):
        a = jax.random.normal(jax.random.key(0), (n, n))
        b = jax.random.normal(jax.random.key(1), (n, n))
        f = jax.jit(jnp.dot)
        s = _timeit(lambda f=f, a=a, b=b: f(a, b).block_until_ready(), repeats)
        best = max(best, 2 * n**3 / s / 1e9)
    return best


def memory_child(spec):
    """Runs one round of many digits clients in chunks; prints peak RSS (run as a subprocess)."""
    num_clients, chunk, steps, batch = (int(v) for v in spec.split(","))
    args = argparse.Namespace(local_steps=steps, batch_size=batch, repeats=1)
    t = time.perf_counter()
    run, info = bench_ours("digits", num_clients, args, "chunked", chunk)
    result = {"seconds": _timeit(run, 1), **info}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "clients": num_clients,
                "chunk": chunk,
                "round_seconds": result["seconds"],
                "wall_seconds": time.perf_counter() - t,
                "peak_rss_bytes": peak,
                "xla_memory_bytes": result["memory_bytes"],
            }
        )
    )


def memory_check(args):
    spec = f"{args.memory_clients},{args.memory_chunk},{args.local_steps},{args.batch_size}"
    out = subprocess.run(
        [sys.executable, __file__, "--_memory-child", spec],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # What one vmap over every client would need, from XLA's analysis only (not run: it may not fit).
    cfg, shape, model, params, state = _model("digits")
    x = jax.ShapeDtypeStruct(
        (args.memory_clients, args.local_steps * args.batch_size, *shape), jnp.float32
    )
    data = ClientData(
        x=x,
        y=jax.ShapeDtypeStruct(x.shape[:2], jnp.int32),
        num_examples=jax.ShapeDtypeStruct((args.memory_clients,), jnp.int32),
        client_ids=jax.ShapeDtypeStruct((args.memory_clients,), jnp.int32),
    )
    rule = fedavg(optax.sgd(1.0))
    round_fn = make_round(
        model,
        _client_opt(),
        rule,
        batch_size=args.batch_size,
        num_local_steps=args.local_steps,
        divergence=False,
    )
    server = init_server_state(params, state, rule)
    compiled = jax.jit(round_fn).lower(server, data, jax.random.key(0)).compile()
    result["vmap_xla_memory_bytes"] = _memory_bytes(compiled)
    return result


def _fmt_rate(v):
    return f"{v:,.0f}" if v else "-"


def main(args):
    if args.memory_child:
        memory_child(args.memory_child)
        return
    clients = [int(c) for c in args.clients.split(",")]
    devices = jax.devices()
    torch_ok = not args.no_torch
    if torch_ok:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("torch not installed: skipping the PyTorch loop (pip install torch)", flush=True)
            torch_ok = False
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "backend": jax.default_backend(),
        "devices": len(devices),
        "device_kind": devices[0].device_kind,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "local_steps": args.local_steps,
        "batch_size": args.batch_size,
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "dense_gflops": dense_gflops(args.repeats),
        "models": {},
    }
    print(f"dense matmul: {report['dense_gflops']:.1f} GFLOP/s", flush=True)
    strategies = [
        ("vmap", "vmap", 0),
        ("chunks of 4", "chunked", 4),
        ("one at a time", "chunked", 1),
    ]
    if len(devices) > 1:
        strategies.append((f"sharded over {len(devices)}", "sharded", 1))
    strategies.append(("auto", "auto", 0))
    for name in args.models.split(","):
        flops = flops_per_example(name, args)
        per_c = {}
        model_clients = clients
        if name == "resnet18":
            model_clients = [int(c) for c in args.resnet18_clients.split(",")]
        for c in model_clients:
            runners = {}
            examples = c * args.local_steps * args.batch_size
            for label, strategy, chunk in strategies:
                runners[f"ours: {label}"] = bench_ours(name, c, args, strategy, chunk)
            runners["ours: auto + divergence metrics"] = bench_ours(name, c, args, "auto", 0, True)
            runners["jitted per-client loop (XLA conv)"] = bench_jax_loop(name, c, args, "native")
            runners["jitted per-client loop (our conv)"] = bench_jax_loop(name, c, args, "im2col")
            if torch_ok:
                runners["PyTorch per-client loop"] = bench_torch_loop(name, c, args)
            runners["one model, C x B per step"] = bench_one_model(name, c, args)
            rows = interleaved(runners, args.repeats)
            for row in rows.values():
                row["examples_per_second"] = examples / row["seconds"]
                row["gflops"] = flops * row["examples_per_second"] / 1e9
            ours = [v for k, v in rows.items() if k.startswith("ours:") and "divergence" not in k]
            best = max(r["examples_per_second"] for r in ours)
            for row in rows.values():
                row["ours_best_over_this"] = best / row["examples_per_second"]
            per_c[c] = rows
            line = ", ".join(f"{k}: {v['examples_per_second']:.0f}" for k, v in rows.items())
            print(f"{name} C={c}: {line}", flush=True)
        report["models"][name] = {"flops_per_example": flops, "clients": per_c}
        _write(report, args.out)  # keep what is measured even if a later model fails
    if args.memory_check:
        report["memory_check"] = memory_check(args)
        print(f"memory check: {report['memory_check']}", flush=True)
    print(_write(report, args.out))


def _write(report, out):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "bench_clients.json"), "w") as f:
        json.dump(report, f, indent=2, default=str)
    md = markdown(report)
    with open(os.path.join(out, "bench_clients.md"), "w") as f:
        f.write(md)
    return md


def markdown(report) -> str:
    lines = [
        f"# Client-parallel execution benchmark ({report['date']})",
        "",
        f"`{report['command']}`",
        "",
        f"Backend {report['backend']} ({report['devices']} device(s), {report['device_kind']}, "
        f"{report['cpu_count']} CPUs), jax {report['jax']}; S={report['local_steps']} local steps "
        f"of B={report['batch_size']} per client. Dense f32 matmul: "
        f"**{report['dense_gflops']:.1f} GFLOP/s**. Examples per second (higher is better); "
        "'best/this' = our best strategy's rate over the row's; GFLOP/s from XLA's cost analysis "
        "of one training step. Rates are best-of-repeats (timed round-robin); the JSON keeps "
        "every repeat. On CPU 'one at a time' and 'auto' run the same program: their difference "
        "shows the noise of the machine.",
        "",
    ]
    for name, m in report["models"].items():
        clients = list(m["clients"])
        ref_c = 16 if 16 in clients else clients[-1]
        lines += [
            f"## {name} CNN ({m['flops_per_example'] / 1e6:.1f} MFLOP per training example)",
            "",
            "| variant | "
            + " | ".join(f"C={c}" for c in clients)
            + f" | best/this at C={ref_c} | GFLOP/s at C={ref_c} | compile s at C={ref_c} |"
            f" XLA memory MiB at C={ref_c} |",
            "|---|" + "---|" * (len(clients) + 4),
        ]
        variants = list(next(iter(m["clients"].values())))
        for v in variants:
            cells = [_fmt_rate(m["clients"][c][v]["examples_per_second"]) for c in clients]
            ref = m["clients"][ref_c][v]
            mem = ref.get("memory_bytes")
            cells += [
                f"{ref['ours_best_over_this']:.2f}x",
                f"{ref['gflops']:.1f}",
                f"{ref['compile_seconds']:.1f}" if "compile_seconds" in ref else "-",
                f"{mem / 2**20:.0f}" if mem else "-",
            ]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        lines.append("")
    if "memory_check" in report:
        mc = report["memory_check"]
        vm = mc.get("vmap_xla_memory_bytes")
        lines += [
            f"## {mc['clients']} digits-CNN clients in one round",
            "",
            f"Chunks of {mc['chunk']}: one round {mc['round_seconds']:.1f} s, peak RSS of the whole "
            f"process **{mc['peak_rss_bytes'] / 2**30:.2f} GiB** (XLA's estimate for the round "
            f"{mc['xla_memory_bytes'] / 2**30:.2f} GiB); one vmap over every client would need "
            + (f"{vm / 2**30:.2f} GiB by XLA's estimate." if vm else "(not reported)."),
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main(ARGS)
