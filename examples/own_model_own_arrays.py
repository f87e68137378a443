"""Your own Flax model on your own NumPy arrays, through the Python API: a round, ten rounds and a
learning-rate sweep on the sweep axis, with per-layer divergence every round.

    python examples/own_model_own_arrays.py [WORKDIR] [--tiny]

The user's own code is the part between the two rules below (under 30 lines): a module, arrays with
a client id per example, two registrations and a config. ``--tiny`` (the test suite) runs 2 rounds
instead of 10 and a 2-point sweep.
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


# ---------------------------------------------------------------------------------------------
class MLP(nnx.Module):  # any NNX module: train=/mask= keywords are optional
    def __init__(self, din, dout, width, rngs):
        self.hidden = nnx.Linear(din, width, rngs=rngs)
        self.out = nnx.Linear(width, dout, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x)))


rng = np.random.default_rng(0)
x = rng.normal(size=(600, 10)).astype(np.float32)
y = (x[:, :3].sum(1) > 0).astype(int) + (x[:, 3] > 1)  # 3 classes
register_arrays("my_arrays", x, y, client_ids=rng.integers(0, 20, len(x)))  # 20 natural clients
register_model("my_mlp", lambda cfg, shape, classes, rngs: MLP(shape[0], classes, cfg.width, rngs))

config = fd.default_config()
config.data.name, config.data.partition = "my_arrays", "natural"
config.model.name, config.model.width = "my_mlp", 16
config.fl.num_clients, config.fl.local_steps, config.fl.batch_size = 20, 5, 16
config.num_rounds = 1
fd.run(config, WORKDIR / "one_round")  # a round
config.num_rounds = 2 if TINY else 10
fd.run(config, WORKDIR / "ten_rounds")  # ten rounds
config.sweep = (("client_opt.learning_rate", (0.03, 0.1) if TINY else (0.01, 0.03, 0.1)),)
sweep = fd.run(config, WORKDIR / "lr_sweep")  # one program for every rate (the sweep axis)
# ---------------------------------------------------------------------------------------------

last = json.loads((WORKDIR / "ten_rounds" / "metrics.jsonl").read_text().splitlines()[-1])
for layer in ("hidden", "out"):
    print(f"relative divergence of {layer}: {last[f'divergence/{layer}/kernel/relative']:.3g}")
for point, summary in sweep.items():
    print(f"{point}: test accuracy {summary['final_accuracy']:.3f}")
