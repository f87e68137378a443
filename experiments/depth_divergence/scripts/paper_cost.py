"""The compute each paper-scale config needs, by the project's own FLOP count, in H200 GPU-hours.

    python experiments/depth_divergence/scripts/paper_cost.py [--out experiments/depth_divergence/results/paper_cost.json]

For every point of every ``configs/paper_scale/*.py`` sweep:

- training FLOPs per example: XLA's cost analysis of one SGD step (forward, backward, update;
  XLA's own convolution), as ``benchmarks/bench_clients.py`` counts them (it compiles for the CPU
  backend; the lowered program gives the same count without compiling; XLA's GPU cost analysis
  would leave out cuDNN convolutions); evaluation FLOPs per example: the eval-mode forward pass;
- examples computed: what the runner computes, padding included: the partition drawn as
  ``experiment.prepare`` draws it (on labels with the dataset's class counts), every learner
  ``num_steps x batch`` examples a round (``experiment.learners_and_steps``, the runner's count), every
  evaluation the whole test set (rounds 1, the last, and every ``eval.every_rounds``-th);
- time: total FLOPs over the rate ResNet-18 (CIFAR stem, BatchNorm) sustained on one H200 in
  docs/benchmarks.md's H200 table (22,136 examples/s at 64 clients, 20,715 at 16, times its
  training FLOPs per example counted the same way).

Second reading (``h200_hours_per_example_floor``): each run takes at least its examples (training
and test) over ResNet-18's 22,136 examples/s, i.e. no net runs faster per example than ResNet-18
with the CIFAR stem did; the ImageNet-stem nets on CIFAR need 2.6-21x fewer FLOPs per example than
it, but their small maps and many layers use the GPU far less well, so plan with the larger reading.

Left out: the divergence metrics (one gradient per client per round for ``grad``: under 1% of 64
local steps), checkpoints and compilation. The ImageNet stem leaves 8x8 maps after its pool on
32x32 inputs; such small convolutions use a GPU less well than ResNet-18 on 32x32 maps did, so
read the hours as a lower bound for the ImageNet-stem nets on CIFAR.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

HERE = pathlib.Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[3]))

from fedjax_deep.config import default_config, load_config  # noqa: E402
from fedjax_deep.data import INPUT_SHAPES, NUM_CLASSES, make_partition  # noqa: E402
from fedjax_deep.experiment import learners_and_steps  # noqa: E402  (the runner's own count)
from fedjax_deep.fl.client import make_loss_fn  # noqa: E402
from fedjax_deep.models import build_model  # noqa: E402
from fedjax_deep.sweep import expand  # noqa: E402

CONFIGS = HERE.parents[1] / "configs" / "paper_scale"
TRAIN_SIZE = {"cifar10": 50_000, "cifar100": 50_000, "tiny_imagenet": 100_000}
TEST_SIZE = {"cifar10": 10_000, "cifar100": 10_000, "tiny_imagenet": 10_000}
# docs/benchmarks.md, the H200 table (one H200, 2026-11-26): ResNet-18, CIFAR stem, BatchNorm.
H200_RESNET18_EXAMPLES_PER_S = {64: 22_136, 16: 20_715}


def _flops(fn, *args) -> float:
    """XLA's cost analysis of ``fn`` lowered (not compiled: the count is the same as the compiled
    CPU program's, 2.92 GFLOP for ResNet-18's training step either way, in seconds instead of
    minutes for the deep nets)."""
    cost = jax.jit(fn).lower(*args).cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost["flops"])


def model_flops(model_config, dataset_shape, num_classes, batch: int = 4) -> dict:
    """Training and eval-forward FLOPs per example of one model (abstract shapes: nothing big is
    allocated)."""
    cfg = model_config.copy_and_resolve_references()
    cfg.conv_impl = "native"
    box = {}

    def init(key):
        model, params, state = build_model(cfg, dataset_shape, num_classes, key)
        box["model"] = model
        return params, state

    params, state = jax.eval_shape(init, jax.random.key(0))
    model = box["model"]
    opt = optax.sgd(0.02, momentum=0.9)
    loss_fn = make_loss_fn(model)

    def step(params, state, opt_state, batch):
        grads, (state, _, _) = jax.grad(loss_fn, has_aux=True)(params, state, batch)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), state, opt_state

    data = {
        "x": jax.ShapeDtypeStruct((batch, *dataset_shape), jnp.float32),
        "y": jax.ShapeDtypeStruct((batch,), jnp.int32),
        "mask": jax.ShapeDtypeStruct((batch,), jnp.bool_),
    }
    opt_state = jax.eval_shape(opt.init, params)
    train = _flops(step, params, state, opt_state, data) / batch
    x = jax.ShapeDtypeStruct((batch, *dataset_shape), jnp.float32)
    forward = _flops(lambda p, s, x: model.apply(p, s, x, train=False)[0], params, state, x)
    return {"train": train, "forward": forward / batch}


def _evals(num_rounds: int, every: int) -> int:
    return sum(1 for r in range(1, num_rounds + 1) if r in (1, num_rounds) or r % every == 0)


def point_examples(config) -> tuple[int, int]:
    """(training examples computed, test examples evaluated) of one run, padding included."""
    name = config.data.name
    k = NUM_CLASSES[name]
    labels = np.repeat(np.arange(k), TRAIN_SIZE[name] // k)
    rng = np.random.default_rng(config.seed)
    fl_partition = make_partition(config.data, labels, config.fl.num_clients, rng)
    partition, batch, steps = learners_and_steps(config, fl_partition)
    learners = 1 if config.mode == "centralized" else (config.fl.cohort_size or len(partition))
    train = config.num_rounds * learners * steps * batch
    test = _evals(config.num_rounds, config.eval.every_rounds) * TEST_SIZE[name]
    return train, test


def reference_rate() -> dict:
    """The H200's sustained FLOP rate on ResNet-18 (CIFAR stem), at docs/benchmarks.md's cohort sizes."""
    cfg = default_config().model
    cfg.name, cfg.depth, cfg.norm = "resnet", 18, "batch"
    flops = model_flops(cfg, (32, 32, 3), 10)["train"]
    return {
        "resnet18_cifar_stem_train_flops": flops,
        "flop_per_s": {c: rate * flops for c, rate in H200_RESNET18_EXAMPLES_PER_S.items()},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(HERE.parents[1] / "results" / "paper_cost.json"))
    p.add_argument("--only", default="", help="comma-separated config stems (default: all)")
    args = p.parse_args(argv)
    ref = reference_rate()
    rate = ref["flop_per_s"][64]
    print(f"reference: ResNet-18 CIFAR stem {ref['resnet18_cifar_stem_train_flops'] / 1e9:.2f} "
          f"GFLOP per training example; H200 {rate / 1e12:.1f} TFLOP/s at 64 clients", flush=True)  # fmt: skip
    cache: dict = {}
    out = {"reference": ref, "configs": {}}
    wanted = {s for s in args.only.split(",") if s}
    for path in sorted(CONFIGS.glob("*.py")):
        if path.name == "__init__.py" or (wanted and path.stem not in wanted):
            continue
        total, floor, runs = 0.0, 0.0, []
        for point in expand(load_config(path)):
            c = point.config
            key = (c.model.to_json(), c.data.name)
            if key not in cache:
                shape, k = INPUT_SHAPES[c.data.name], NUM_CLASSES[c.data.name]
                cache[key] = model_flops(c.model, shape, k)
            f = cache[key]
            train, test = point_examples(c)
            flops = train * f["train"] + test * f["forward"]
            total += flops
            floor += max(flops / rate, (train + test) / H200_RESNET18_EXAMPLES_PER_S[64])
            runs.append({"point": point.name, "train_examples": train, "test_examples": test,
                         "train_flops_per_example": f["train"], "flops": flops})  # fmt: skip
        hours, floor = total / rate / 3600, floor / 3600
        longest = max(r["flops"] for r in runs) / rate / 3600
        out["configs"][path.stem] = {"runs": len(runs), "flops": total, "h200_hours": hours,
                                     "h200_hours_per_example_floor": floor,
                                     "longest_run_h200_hours": longest, "points": runs}  # fmt: skip
        print(f"{path.stem}: {len(runs)} runs, {total:.3g} FLOPs, {hours:.1f} H200-hours by "
              f"FLOPs, {floor:.1f} with the per-example floor (longest run by FLOPs "
              f"{longest:.2f} h)", flush=True)  # fmt: skip
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
