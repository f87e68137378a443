"""Client-parallel execution against the per-client loops, side by side in one run.

    python benchmarks/bench_clients.py [--clients 1,4,16,64] [--models digits,cifar,resnet18]
        [--resnet18-clients 4] [--local-steps 4] [--batch-size 32] [--out DIR] [--host-devices N]
        [--repeats 5] [--no-torch] [--memory-check] [--matmul-size N]

For each model (the digits CNN on 8x8x1; a CIFAR-shape CNN on 32x32x3; ResNet-18 with its CIFAR
stem) and each cohort size C, every variant trains C clients for S local steps of B examples from
the same start, then averages the clients' weights (examples per second = C x S x B / seconds; best
of ``--repeats`` timings taken round-robin across the variants so that a shared machine's drift hits
all alike; every timing ends with ``block_until_ready`` or ``torch.cuda.synchronize``). Every
variant uses float32 weights and data and SGD with momentum 0.9 and weight decay 5e-4 (lr 0.01);
the data sit on the device before timing:

- ours: the jitted round (``fedjax_deep.make_round``) under each execution strategy (vmap, chunks of
  4, one client at a time, sharded when there are several devices, and ``auto``), divergence off;
  plus ``auto`` with the divergence metrics on;
- jitted per-client loop: a Python loop over clients and local steps calling one jitted SGD step
  (how FedJAX runs clients), with XLA's own convolution and with ours;
- PyTorch per-client loop: the same network, optimizer and data, clients one after another in eager
  PyTorch (how most FL research code and process-based simulators run);
- PyTorch torch.func.vmap: the same network with its weights stacked over the C clients
  (``torch.func.stack_module_state``), one ``vmap(grad(loss))`` through ``functional_call`` per
  local step on the [C, B] batch, and ``torch.optim.SGD`` (the loop's optimizer, which is
  elementwise, so it is exactly the per-client update) stepping the stacked weights. BatchNorm
  (ResNet-18) runs in train mode with its running statistics as stacked per-client buffers,
  updated in place under vmap as in the loop. Eager, no ``torch.compile``. If torch.func is missing
  or the model fails under it, the row is left out and the reason recorded (``torch_skipped`` in
  the JSON);
- one model on C x B examples per step: the same FLOPs with no client axis (a jitted step in a
  loop).

Both PyTorch variants run on the device JAX runs on: CUDA when ``jax.default_backend()`` is 'gpu'
and ``torch.cuda.is_available()``, else the CPU (the JSON and the markdown name the device, and say
when it is not JAX's, e.g. on TPU or with a CPU-only torch build). On CUDA they run with cuDNN
autotuning (``cudnn.benchmark``, as XLA autotunes) and TF32 matrix products and convolutions
(which XLA's default float32 precision may use on NVIDIA GPUs). Both need torch (the ``bench``
extra); with ``--no-torch`` or without torch the rest runs and one line says so. When torch is
wanted, JAX starts with ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (unless set) so that both can
allocate on one GPU. On a CPU shared with other work, PyTorch's OpenMP threads slow down far more
than XLA's (an idle machine gives the fair comparison).

Also measured:

- model FLOPs per training example: XLA's cost analysis of one single-client SGD step (XLA's
  convolution) compiled for the CPU backend, whatever backend runs the benchmark (on GPU XLA's
  cost analysis does not count cuDNN convolution calls); an analytic count of the convolutions and
  matrix products in the step's jaxpr is kept beside it as a cross-check and used if XLA reports
  nothing (``flops_source`` says which);
- the device's dense matrix-product ceilings: a square ``jnp.matmul`` (n = 4096 on GPU/TPU, 1024 on
  CPU, ``--matmul-size``) in float32 (default precision) and in bfloat16, best of the repeats after
  a warm-up; our best strategy's GFLOP/s (FLOPs per example x examples per second) as a fraction of
  each;
- per model and C: our best strategy's rate over the best PyTorch variant's (loop or
  torch.func.vmap) and over the one-model rate; compile times and XLA's memory estimate.

``--memory-check`` runs 1,000 digits-CNN clients in one chunked round in a subprocess and reports
its peak RSS. Results go to ``DIR/bench_clients.json`` and ``DIR/bench_clients.md``. It runs
unchanged on CPU, GPU and TPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
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
    p.add_argument(
        "--matmul-size",
        type=int,
        default=0,
        help="ceiling matmul size (0: 4096 on GPU/TPU, 1024 CPU)",
    )
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--_memory-child", dest="memory_child", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


ARGS = _parse_args()
if ARGS.host_devices:
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + f" --xla_force_host_platform_device_count={ARGS.host_devices}"
    )
if not ARGS.no_torch:  # let PyTorch allocate on the GPU that JAX would otherwise mostly reserve
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402  (XLA_FLAGS must be set first)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from fedjax_deep.config import default_config  # noqa: E402
from fedjax_deep.data import ClientData  # noqa: E402
from fedjax_deep.fl import init_sim_state, make_round  # noqa: E402
from fedjax_deep.fl.algorithms import fedavg  # noqa: E402
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
    server = init_sim_state(params, state, rule)
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


def _jaxpr_flops(jaxpr) -> float:
    """Analytic FLOPs of the convolutions and matrix products in a (closed) jaxpr, nested jaxprs
    included (scan bodies times their length; the costliest branch of a cond); 2 per multiply-add,
    padding taps counted, elementwise work not."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            k = math.prod(lhs[d] for d in lhs_contract)
            total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * k
        elif name == "conv_general_dilated":
            rhs = eqn.invars[1].aval.shape
            out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
            # Each output element: one multiply-add per kernel tap and input feature of its group;
            # the zeros an input dilation inserts (a strided convolution's input gradient) are not
            # work. Padding taps are counted.
            dilation = math.prod(eqn.params.get("lhs_dilation") or (1,))
            total += (
                2.0
                * math.prod(eqn.outvars[0].aval.shape)
                * math.prod(rhs)
                / out_features
                / dilation
            )
        times = eqn.params.get("length", 1) if name == "scan" else 1
        for value in eqn.params.values():
            if hasattr(value, "eqns") or hasattr(value, "jaxpr"):
                total += times * _jaxpr_flops(value)
            elif isinstance(value, tuple | list) and value and hasattr(value[0], "jaxpr"):
                total += max(_jaxpr_flops(v) for v in value)  # cond branches
    return total


def flops_per_example(name, args):
    """Training FLOPs per example of one single-client SGD step (XLA's convolution), with the
    source: XLA's cost analysis of the step compiled for the CPU backend (whatever backend runs the
    benchmark: on GPU XLA's cost analysis leaves out the cuDNN convolution calls), else the analytic
    count of its jaxpr. Returns ``(flops, source, {the two counts})``."""
    cfg, shape, model, params, state = _model(name, "native")
    opt = _client_opt()
    step = _single_step(model, opt)
    batch = {
        "x": jnp.zeros((args.batch_size, *shape)),
        "y": jnp.zeros((args.batch_size,), jnp.int32),
        "mask": jnp.ones((args.batch_size,), bool),
    }
    # Committed to the CPU device, so that jit compiles the step for the CPU backend.
    cpu = jax.devices("cpu")[0]
    inputs = jax.device_put((params, state, opt.init(params), batch), cpu)
    counts = {"jaxpr_analytic": _jaxpr_flops(jax.make_jaxpr(step)(*inputs)) / args.batch_size}
    xla_error = None
    try:
        compiled = jax.jit(step).lower(*inputs).compile()
        shardings = jax.tree.leaves(compiled.input_shardings)
        platforms = {d.platform for sh in shardings for d in sh.device_set}
        if platforms != {"cpu"}:
            raise RuntimeError(f"the step compiled for {platforms}, not the CPU")
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list | tuple) else cost
        if cost and cost.get("flops", 0) > 0:
            counts["xla_cost_analysis_cpu"] = float(cost["flops"]) / args.batch_size
        else:
            xla_error = "XLA's CPU cost analysis reported no FLOPs"
    except Exception as e:  # noqa: BLE001 (any failure: fall back to the analytic count)
        xla_error = f"{type(e).__name__}: {e}"
    if "xla_cost_analysis_cpu" in counts:
        source = "XLA cost analysis of one training step compiled for the CPU backend"
        return counts["xla_cost_analysis_cpu"], source, counts
    source = f"analytic count of convolutions and matmuls in the step's jaxpr ({xla_error})"
    return counts["jaxpr_analytic"], source, counts


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

    torch.manual_seed(0)  # before the layers are built: every call gives the same weights
    layers = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    cin = 64
    for s, planes in enumerate((64, 128, 256, 512)):
        for b in range(2):
            layers.append(Basic(cin, planes, 2 if (s > 0 and b == 0) else 1))
            cin = planes
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10)]
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
    torch.manual_seed(0)  # before the layers are built: every call gives the same weights
    layers, cin, spatial = [], shape[-1], shape[0]
    for w, s in zip(widths, strides, strict=True):
        layers += [
            nn.Conv2d(cin, w, 3, stride=s, padding=1, bias=False),
            nn.GroupNorm(8, w),
            nn.ReLU(),
        ]
        cin, spatial = w, -(-spatial // s)
    layers += [nn.Flatten(), nn.Linear(cin * spatial * spatial, 10)]
    return nn.Sequential(*layers)


def torch_setup():
    """The PyTorch device (JAX's: CUDA when JAX runs on a GPU and torch sees one, else the CPU) and
    what the report says about it. On CUDA: cuDNN autotuning (as XLA autotunes its convolutions)
    and TF32 matrix products and convolutions (XLA's default float32 precision may use TF32 on
    NVIDIA GPUs; PyTorch's default already does for cuDNN convolutions)."""
    import torch

    backend = jax.default_backend()
    info = {"version": torch.__version__}
    if backend == "gpu" and torch.cuda.is_available():
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        info.update(
            device="cuda",
            device_name=torch.cuda.get_device_name(0),
            same_device_as_jax=True,
            settings="cudnn.benchmark, TF32 matmul and convolution",
        )
    else:
        device = torch.device("cpu")
        torch.set_num_threads(os.cpu_count() or 1)
        info.update(
            device="cpu",
            same_device_as_jax=backend == "cpu",
            settings=f"{torch.get_num_threads()} threads",
        )
        if backend != "cpu":
            why = "torch.cuda is not available" if backend == "gpu" else "torch cannot use it here"
            info["note"] = (
                f"JAX runs on {backend} but PyTorch on the CPU ({why}): not like with like"
            )
    return device, info


def _torch_sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _torch_data(name, num_clients, args, device):
    import torch

    shape, _ = model_specs()[name]
    x, y = _data(shape, num_clients, args.local_steps, args.batch_size)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3))).to(device)  # NCHW
    yt = torch.from_numpy(y.astype(np.int64)).to(device)
    return xt, yt


def bench_torch_loop(name, num_clients, args, device):
    """Eager PyTorch, clients one after another: load the start weights, a fresh
    ``torch.optim.SGD``, S steps of B, add the client's weights to the running mean."""
    import torch

    xt, yt = _torch_data(name, num_clients, args, device)
    b = args.batch_size
    loss_fn = torch.nn.CrossEntropyLoss()
    model = _torch_model(name).to(device)
    start = {k: v.clone() for k, v in model.state_dict().items()}

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
        _torch_sync(device)
        return total

    run()
    return run, {"torch_device": str(device)}


def bench_torch_vmap(name, num_clients, args, device):
    """torch.func: the network's weights (and BatchNorm's running statistics) stacked over the C
    clients with ``stack_module_state``; per local step one ``vmap(grad(loss))`` through
    ``functional_call`` on the [C, B] batch, then ``torch.optim.SGD`` (lr, momentum, weight decay
    as in the loop) stepping the stacked weights: its update is elementwise, so each client's slice
    gets exactly the loop's update. BatchNorm runs in train mode; its running statistics are
    per-client stacked buffers that it updates in place under vmap, as in the loop. Then the mean
    over clients. Raises if torch.func is missing or the model fails under it."""
    import torch
    from torch.func import functional_call, grad, stack_module_state, vmap

    xt, yt = _torch_data(name, num_clients, args, device)
    b = args.batch_size
    server = _torch_model(name).to(device)
    base = copy.deepcopy(server).to("meta")  # the structure only; weights come in as arguments
    stacked_params, stacked_buffers = stack_module_state([server] * num_clients)
    start_params = {k: v.detach().clone() for k, v in stacked_params.items()}
    start_buffers = {k: v.clone() for k, v in stacked_buffers.items()}
    # Leaves for the optimizer; ``detach`` views of them (same storage) go through torch.func.
    params = {k: v.clone().requires_grad_(True) for k, v in start_params.items()}
    views = {k: v.detach() for k, v in params.items()}
    buffers = {k: v.clone() for k, v in start_buffers.items()}

    def loss(p, bufs, x, y):
        return torch.nn.functional.cross_entropy(functional_call(base, (p, bufs), (x,)), y)

    client_grads = vmap(grad(loss))

    def run():
        with torch.no_grad():
            for k, v in params.items():
                v.copy_(start_params[k])
            for k, v in buffers.items():
                v.copy_(start_buffers[k])
        opt = torch.optim.SGD(params.values(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
        for s in range(args.local_steps):
            grads = client_grads(
                views, buffers, xt[:, s * b : (s + 1) * b], yt[:, s * b : (s + 1) * b]
            )
            for k, v in params.items():
                v.grad = grads[k]
            opt.step()
        with torch.no_grad():
            mean = {k: v.mean(0) for k, v in params.items()}
            mean.update(
                {k: v.mean(0) if v.is_floating_point() else v[0] for k, v in buffers.items()}
            )
        _torch_sync(device)
        return mean

    run()
    return run, {"torch_device": str(device)}


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


def dense_ceilings(repeats, size=0):
    """The device's dense matrix-product rates, GFLOP/s: a square ``jnp.matmul`` of n x n (4096 on
    GPU/TPU, 1024 on CPU unless ``size``) in float32 at JAX's default precision (which XLA may run
    as TF32 on NVIDIA GPUs, as it may our float32 training) and in bfloat16; best of
    ``max(repeats, 3)`` timings after a warm-up, each of several back-to-back calls (launch
    overhead amortized) ended by ``block_until_ready``."""
    on_cpu = jax.default_backend() == "cpu"
    n = size or (1024 if on_cpu else 4096)
    calls = 2 if on_cpu else 10
    f = jax.jit(jnp.matmul)
    out = {}
    for dtype in ("float32", "bfloat16"):
        a = jax.random.normal(jax.random.key(0), (n, n), dtype)
        b = jax.random.normal(jax.random.key(1), (n, n), dtype)
        f(a, b).block_until_ready()  # compile and warm up
        best = float("inf")
        for _ in range(max(repeats, 3)):
            t = time.perf_counter()
            for _ in range(calls):
                r = f(a, b)
            r.block_until_ready()
            best = min(best, time.perf_counter() - t)
        out[dtype] = {"gflops": calls * 2 * n**3 / best / 1e9, "n": n, "calls_per_timing": calls}
    out["float32"]["precision"] = "JAX's default (XLA may use TF32 on NVIDIA GPUs)"
    return out


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
    server = init_sim_state(params, state, rule)
    compiled = jax.jit(round_fn).lower(server, data, jax.random.key(0)).compile()
    result["vmap_xla_memory_bytes"] = _memory_bytes(compiled)
    return result


def _fmt_rate(v):
    return f"{v:,.0f}" if v else "-"


def _add_torch(runners, skipped, label, bench, name, c, args, device):
    """Adds a PyTorch runner, or records why it could not run (missing torch.func, a model that
    fails under it, running out of device memory...)."""
    try:
        runners[label] = bench(name, c, args, device)
    except Exception as e:  # noqa: BLE001 (any failure: record it, run the rest)
        skipped[f"{label}, C={c}"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        print(f"{name} C={c}: {label} skipped: {skipped[f'{label}, C={c}']}", flush=True)
        if device is not None and device.type == "cuda":
            import torch

            torch.cuda.empty_cache()


def summarize(rows, flops, ceilings):
    """Per cohort size: our best strategy (divergence off) against the best PyTorch variant and the
    one-model rate, and its GFLOP/s as a fraction of each dense matmul ceiling."""
    ours = {k: v for k, v in rows.items() if k.startswith("ours:") and "divergence" not in k}
    best = max(ours, key=lambda k: ours[k]["examples_per_second"])
    rate = ours[best]["examples_per_second"]
    out = {
        "ours_best": best,
        "ours_examples_per_second": rate,
        "ours_gflops": flops * rate / 1e9,
    }
    for dtype, ceiling in ceilings.items():
        out[f"ours_fraction_of_{dtype}_peak"] = out["ours_gflops"] / ceiling["gflops"]
    torch_rows = {k: v for k, v in rows.items() if k.startswith("PyTorch")}
    if torch_rows:
        best_torch = max(torch_rows, key=lambda k: torch_rows[k]["examples_per_second"])
        out["best_torch"] = best_torch
        out["best_torch_examples_per_second"] = torch_rows[best_torch]["examples_per_second"]
        out["ours_over_best_torch"] = rate / out["best_torch_examples_per_second"]
    one = rows.get("one model, C x B per step")
    if one:
        out["one_model_examples_per_second"] = one["examples_per_second"]
        out["ours_over_one_model"] = rate / one["examples_per_second"]
    return out


def main(args):
    if args.memory_child:
        memory_child(args.memory_child)
        return
    clients = [int(c) for c in args.clients.split(",")]
    devices = jax.devices()
    torch_device, torch_info = None, None
    if args.no_torch:
        torch_info = {"skipped": "--no-torch"}
    else:
        try:
            torch_device, torch_info = torch_setup()
        except ImportError:
            torch_info = {"skipped": "torch is not installed (pip install -e '.[bench]')"}
    if torch_device is None:
        print(f"PyTorch baselines skipped: {torch_info['skipped']}", flush=True)
    else:
        print(f"PyTorch {torch_info['version']} on {torch_info['device']}", flush=True)
        if "note" in torch_info:
            print(f"WARNING: {torch_info['note']}", flush=True)
    ceilings = dense_ceilings(args.repeats, args.matmul_size)
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
        "ceilings": ceilings,
        "dense_gflops": ceilings["float32"]["gflops"],  # as before this file had ceilings
        "torch": torch_info,
        "models": {},
    }
    print(
        "dense matmul ceilings: "
        + ", ".join(f"{k} {v['gflops']:.1f} GFLOP/s (n={v['n']})" for k, v in ceilings.items()),
        flush=True,
    )
    strategies = [
        ("vmap", "vmap", 0),
        ("chunks of 4", "chunked", 4),
        ("one at a time", "chunked", 1),
    ]
    if len(devices) > 1:
        strategies.append((f"sharded over {len(devices)}", "sharded", 1))
    strategies.append(("auto", "auto", 0))
    for name in args.models.split(","):
        flops, flops_source, flops_counts = flops_per_example(name, args)
        print(f"{name}: {flops / 1e6:.1f} MFLOP per training example ({flops_source})", flush=True)
        per_c, summary, skipped = {}, {}, {}
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
            if torch_device is not None:
                for label, bench in (
                    ("PyTorch per-client loop", bench_torch_loop),
                    ("PyTorch torch.func.vmap", bench_torch_vmap),
                ):
                    _add_torch(runners, skipped, label, bench, name, c, args, torch_device)
            runners["one model, C x B per step"] = bench_one_model(name, c, args)
            rows = interleaved(runners, args.repeats)
            for row in rows.values():
                row["examples_per_second"] = examples / row["seconds"]
                row["gflops"] = flops * row["examples_per_second"] / 1e9
            summary[c] = summarize(rows, flops, ceilings)
            for row in rows.values():
                row["ours_best_over_this"] = (
                    summary[c]["ours_examples_per_second"] / row["examples_per_second"]
                )
            per_c[c] = rows
            line = ", ".join(f"{k}: {v['examples_per_second']:.0f}" for k, v in rows.items())
            print(f"{name} C={c}: {line}", flush=True)
        report["models"][name] = {
            "flops_per_example": flops,
            "flops_source": flops_source,
            "flops_per_example_by_source": flops_counts,
            "clients": per_c,
            "summary": summary,
            "torch_skipped": skipped,
        }
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


def _torch_line(report) -> str:
    t = report.get("torch") or {}
    if "skipped" in t:
        return f"PyTorch baselines skipped: {t['skipped']}."
    if not t:
        return ""
    where = t.get("device_name", t["device"])
    line = f"PyTorch {t['version']} on **{t['device']}** ({where}; {t['settings']})"
    if t.get("same_device_as_jax"):
        return line + ", the device JAX runs on."
    return line + f". **{t.get('note', 'Not the device JAX runs on.')}**"


def _pct(v):
    return f"{100 * v:.1f}%" if v is not None else "-"


def markdown(report) -> str:
    ceilings = report.get("ceilings") or {"float32": {"gflops": report["dense_gflops"], "n": "?"}}
    ceiling_text = (
        ", ".join(f"{k} **{v['gflops']:,.1f} GFLOP/s**" for k, v in ceilings.items())
        + f" (square matmul of n={ceilings['float32']['n']}, float32 at JAX's default precision)"
    )
    lines = [
        f"# Client-parallel execution benchmark ({report['date']})",
        "",
        f"`{report['command']}`",
        "",
        f"Backend {report['backend']} ({report['devices']} device(s), {report['device_kind']}, "
        f"{report['cpu_count']} CPUs), jax {report['jax']}; S={report['local_steps']} local steps "
        f"of B={report['batch_size']} per client. Dense matmul ceilings: {ceiling_text}. "
        + _torch_line(report)
        + " Examples per second (higher is better); 'best/this' = our best strategy's rate over "
        "the row's; GFLOP/s = model FLOPs per example (source under each heading) x examples per "
        "second. Rates are best-of-repeats (timed round-robin); the JSON keeps every repeat. On "
        "CPU 'one at a time' and 'auto' run the same program: their difference shows the noise "
        "of the machine.",
        "",
    ]
    for name, m in report["models"].items():
        clients = list(m["clients"])
        ref_c = 16 if 16 in clients else clients[-1]
        source = m.get("flops_source", "XLA cost analysis of one training step")
        lines += [
            f"## {name} CNN ({m['flops_per_example'] / 1e6:.1f} MFLOP per training example)",
            "",
            f"FLOPs: {source}.",
            "",
            "| variant | "
            + " | ".join(f"C={c}" for c in clients)
            + f" | best/this at C={ref_c} | GFLOP/s at C={ref_c} | compile s at C={ref_c} |"
            f" XLA memory MiB at C={ref_c} |",
            "|---|" + "---|" * (len(clients) + 4),
        ]
        variants = list(dict.fromkeys(v for rows in m["clients"].values() for v in rows))
        for v in variants:
            cells = [
                _fmt_rate(m["clients"][c][v]["examples_per_second"])
                if v in m["clients"][c]
                else "-"
                for c in clients
            ]
            ref = m["clients"][ref_c].get(v)
            if ref is None:
                cells += ["-"] * 4
            else:
                mem = ref.get("memory_bytes")
                cells += [
                    f"{ref['ours_best_over_this']:.2f}x",
                    f"{ref['gflops']:.1f}",
                    f"{ref['compile_seconds']:.1f}" if "compile_seconds" in ref else "-",
                    f"{mem / 2**20:.0f}" if mem else "-",
                ]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        lines.append("")
        if m.get("summary"):
            lines += [
                "| C | our best | its GFLOP/s | % of f32 peak | % of bf16 peak | best PyTorch | "
                "ours / best PyTorch | ours / one model on C x B |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for c, sm in m["summary"].items():
                torch_cell = "-"
                if "best_torch" in sm:
                    torch_cell = (
                        f"{sm['best_torch']} ({_fmt_rate(sm['best_torch_examples_per_second'])})"
                    )
                ratio_torch = sm.get("ours_over_best_torch")
                ratio_one = sm.get("ours_over_one_model")
                lines.append(
                    f"| {c} | {sm['ours_best'].removeprefix('ours: ')} "
                    f"({_fmt_rate(sm['ours_examples_per_second'])}) | {sm['ours_gflops']:.1f} | "
                    f"{_pct(sm.get('ours_fraction_of_float32_peak'))} | "
                    f"{_pct(sm.get('ours_fraction_of_bfloat16_peak'))} | {torch_cell} | "
                    + (f"{ratio_torch:.2f}x" if ratio_torch else "-")
                    + " | "
                    + (f"{ratio_one:.2f}x" if ratio_one else "-")
                    + " |"
                )
            lines.append("")
        for what, why in (m.get("torch_skipped") or {}).items():
            lines.append(f"- not run: {what}: {why}")
        if m.get("torch_skipped"):
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
