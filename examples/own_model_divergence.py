"""A per-layer divergence study of your own model: how far federated clients drift apart in each
layer, against the null reference of clients that never average (``mode='independent'``: the same
clients training alone from one initialization, the drift that data heterogeneity alone causes).

    python examples/own_model_divergence.py [WORKDIR] [--tiny]

Prints, per layer in forward order (read off the model's forward pass), the relative dispersion of
the clients' kernels after each federated round over the same quantity for the independent runs.
"""

import json
import pathlib
import sys
import tempfile

import numpy as np
from flax import nnx

import fedjax_deep as fd
from fedjax_deep.data import register_arrays
from fedjax_deep.models import register_model

TINY = "--tiny" in sys.argv
WORKDIR = pathlib.Path(([a for a in sys.argv[1:] if a != "--tiny"] or [tempfile.mkdtemp()])[0])


class Deep(nnx.Module):
    """``depth`` hidden layers of ``width``, then the classifier."""

    def __init__(self, din, dout, width, depth, rngs):
        dims = [din] + [width] * depth
        self.blocks = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:], strict=True)]
        )
        self.head = nnx.Linear(width, dout, rngs=rngs)

    def __call__(self, x):
        for block in self.blocks:
            x = nnx.relu(block(x))
        return self.head(x)


rng = np.random.default_rng(0)
x = rng.normal(size=(800, 12)).astype(np.float32)
y = np.argmax(x[:, :4] + 0.5 * rng.normal(size=(800, 4)), axis=1)
register_arrays("drift_arrays", x, y)
register_model("deep_mlp", lambda c, s, k, rngs: Deep(s[0], k, c.width, c.depth, rngs))

config = fd.default_config()
config.data.name, config.data.partition, config.data.dirichlet_alpha = (
    "drift_arrays",
    "dirichlet",
    0.3,
)
config.model.name, config.model.width, config.model.depth = (
    "deep_mlp",
    8 if TINY else 32,
    2 if TINY else 4,
)
config.fl.num_clients, config.fl.local_steps, config.fl.batch_size = 8, 4 if TINY else 20, 16
config.num_rounds = 2 if TINY else 10
config.sweep = (("mode", ("fl", "independent")),)
fd.run(config, WORKDIR, progress=not TINY)


def drift(mode):
    """``{layer: relative dispersion of its kernel}``, mean over rounds."""
    info = json.loads((WORKDIR / f"mode-{mode}" / "run_info.json").read_text())
    rows = [
        json.loads(r) for r in (WORKDIR / f"mode-{mode}" / "metrics.jsonl").read_text().splitlines()
    ]
    return {
        layer: np.mean([r[f"divergence/{layer}/kernel/relative"] for r in rows])
        for layer in info["layers"]
    }


fl, null = drift("fl"), drift("independent")
for layer in fl:
    print(
        f"{layer:>10}: FL drift {fl[layer]:.3g}, independent {null[layer]:.3g}, "
        f"ratio {fl[layer] / null[layer]:.3f}"
    )
