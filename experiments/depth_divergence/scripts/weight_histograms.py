"""The paper authors' divergence view of a run: per convolution layer, a histogram of every client's
weights minus the clients' mean, after the local training of one round (docs/paper_preset.md).

    python experiments/depth_divergence/scripts/weight_histograms.py RUN_DIR [--round R] [--out PNG]
    python experiments/depth_divergence/scripts/weight_histograms.py --from-json HIST.json --out PNG

From a run directory (a federated run with checkpoints): restores the global model saved after
round ``R`` (default: the newest checkpoint; 0: the initial model), trains every client through
round ``R + 1`` with the run's own batches, keys and augmentation (FedAvg local training: an
algorithm's correction terms are not applied), and counts ``W[k] - mean_k W[k]`` per convolution
kernel on fixed edges (``fedjax_deep.metrics.deviation_histograms``). Writes the counts as JSON
(``RUN_DIR/weight_histograms_rR.json``, the record ``--from-json`` reads back) and a figure of up to
six convolution layers, evenly spaced from the input to the output, each panel the share of the
layer's weights per bin on linear axes.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[3]))


def trained_clients(run_dir, round_: int | None = None, *, chunk_size: int = 0):
    """Every client of a federated run after its local training in round ``round_ + 1``, from the
    global model checkpointed after round ``round_`` (default: the newest; 0: the initial model),
    with the run's own batches, keys and augmentation.

    Returns:
      ``(round_, client_params [C, ...], num_examples [C])``.
    """
    import jax
    import ml_collections

    from fedjax_deep import experiment as experiment_lib
    from fedjax_deep.checkpoint import Checkpointer
    from fedjax_deep.data import make_augment, round_batch_indices
    from fedjax_deep.fl import clients
    from fedjax_deep.fl.client import ClientState, make_client_update
    from fedjax_deep.fl.round import round_client_keys
    from fedjax_deep.models import build_model
    from fedjax_deep.optimizers import make_client_optimizer
    from fedjax_deep.runfiles import read_json

    run_dir = pathlib.Path(run_dir)
    config = ml_collections.ConfigDict(read_json(run_dir / "config.json", required="a run"))
    if config.mode != "fl" or config.sweep or config.fl.cohort_size:
        raise SystemExit(f"{run_dir}: expected one federated run (mode fl, no sweep, every client "
                         "every round)")  # fmt: skip
    prepared = experiment_lib.prepare(config)
    exp = experiment_lib.build(config, prepared, {})
    ckpt = Checkpointer(run_dir / "checkpoints")
    if round_ is None:
        round_ = ckpt.latest_round() or 0
    state = exp.state if round_ == 0 else ckpt.restore(round_, exp.state, exp.run_key)

    dataset = prepared.dataset
    model = build_model(config.model, dataset.input_shape, dataset.num_classes,
                        jax.random.key(0))[0]  # fmt: skip
    opt = make_client_optimizer(config.client_opt)
    update = make_client_update(model, opt, make_augment(config.data.augment))
    data, key = exp.round_inputs(round_)
    batch_keys, train_keys = round_client_keys(key, data.client_ids)
    idx, mask = round_batch_indices(batch_keys, data.num_examples, data.max_examples,
                                    exp.run_info["batch_size"],
                                    exp.run_info["num_local_steps"])  # fmt: skip
    start = ClientState(state.params, state.model_state, opt.init(state.params))

    def train(batches, k, x, y):
        return update(start, batches, k, {"x": x, "y": y})[0].params

    client_params = jax.jit(lambda: clients.map(
        train, ({"idx": idx, "mask": mask}, train_keys, data.x, data.y), chunk_size))()  # fmt: skip
    return round_, client_params, data.num_examples


def histogram_record(client_params, round_: int, *, max_abs: float = 0.0,
                     num_bins: int = 41) -> dict:  # fmt: skip
    """The record ``{'round', 'edges', 'num_clients', 'layers': {path: counts}}`` of clients
    ``[C, ...]`` trained in round ``round_ + 1`` (:func:`trained_clients`); ``max_abs`` 0 spans the
    widest layer's deviations."""
    import jax
    import jax.numpy as jnp

    from fedjax_deep.metrics import conv_kernel_paths, deviation_histograms, symmetric_edges

    paths = conv_kernel_paths(jax_first(client_params))
    if not max_abs:
        dev = [jnp.max(jnp.abs(w - jnp.mean(w, axis=0, keepdims=True))) for w in
               (_leaf(client_params, p) for p in paths)]  # fmt: skip
        max_abs = 1.001 * float(max(dev)) or 1.0  # the widest deviation inside the edges
    edges = symmetric_edges(max_abs, num_bins)
    hist = deviation_histograms(client_params, edges, paths)
    return {
        "round": round_ + 1,
        "num_clients": int(jax.tree.leaves(client_params)[0].shape[0]),
        "edges": edges.tolist(),
        "layers": {k: np.asarray(v).tolist() for k, v in hist.items()},
    }


def jax_first(tree):
    """One client's slice of a ``[C, ...]`` tree (shapes only matter)."""
    import jax

    return jax.tree.map(lambda x: x[0], tree)


def _leaf(tree, path):
    for k in path:
        tree = tree[k]
    return tree


def plot(record: dict, path, max_panels: int = 6) -> None:
    """Up to ``max_panels`` layers, evenly spaced from the first to the last convolution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(record["layers"])
    picks = sorted({round(i) for i in np.linspace(0, len(names) - 1, min(max_panels, len(names)))})
    edges = np.asarray(record["edges"])
    centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    cols = min(3, len(picks))
    rows = -(-len(picks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False,
                             sharex=True)  # fmt: skip
    for ax, i in zip(axes.flat, picks, strict=False):
        counts = np.asarray(record["layers"][names[i]], float)
        share = counts[1:-1] / counts.sum()
        ax.bar(centres, share, width=width, color="tab:blue", linewidth=0)
        outside = (counts[0] + counts[-1]) / counts.sum()
        note = f", {outside:.1%} outside" if outside else ""
        ax.set_title(f"conv {i + 1}/{len(names)}: {names[i]}{note}", fontsize=8)
        ax.set_xlabel("client weight - client mean")
        ax.set_ylabel("share of the layer's weights")
    for ax in list(axes.flat)[len(picks) :]:
        ax.axis("off")
    fig.suptitle(f"{record['num_clients']} clients after local training in round "
                 f"{record['round']}: spread around their mean, input to output")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir", nargs="?")
    p.add_argument("--round", type=int, default=None, help="checkpoint round (default: newest)")
    p.add_argument("--from-json", default="", help="plot a record written before")
    p.add_argument("--max-abs", type=float, default=0.0, help="bin range (0: the widest layer)")
    p.add_argument("--bins", type=int, default=41)
    p.add_argument("--chunk-size", type=int, default=0, help="clients per vmap chunk (0: all)")
    p.add_argument("--out", default="", help="figure path (default: beside the JSON)")
    args = p.parse_args(argv)
    if args.from_json:
        record = json.loads(pathlib.Path(args.from_json).read_text())
        json_path = pathlib.Path(args.from_json)
    elif args.run_dir:
        round_, client_params, _ = trained_clients(args.run_dir, args.round,
                                                   chunk_size=args.chunk_size)  # fmt: skip
        record = histogram_record(client_params, round_, max_abs=args.max_abs, num_bins=args.bins)
        record["run"] = args.run_dir
        json_path = pathlib.Path(args.run_dir) / f"weight_histograms_r{record['round'] - 1}.json"
        json_path.write_text(json.dumps(record) + "\n")
    else:
        p.error("give a RUN_DIR or --from-json")
    out = pathlib.Path(args.out or json_path.with_suffix(".png"))
    plot(record, out)
    print(f"{json_path} and {out}: {len(record['layers'])} convolution layers, round "
          f"{record['round']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
