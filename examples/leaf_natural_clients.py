"""Natural clients from a LEAF-layout directory (FEMNIST, Shakespeare and Sent140 ship this way).

    python examples/leaf_natural_clients.py [WORKDIR] [--tiny]

The script first writes a small LEAF directory, ``train/*.json`` and ``test/*.json`` with
``users``, ``num_samples`` and ``user_data``, from scikit-learn's digits: each "writer" holds a
few digits of a few classes, and writers' sizes differ by a factor of 20. It then trains on the
writers as clients (``data.partition=natural``), a cohort of them per round, each capped at
``data.max_client_examples``; smaller clients are padded and masked.
"""

import json
import pathlib
import sys
import tempfile

import numpy as np
from sklearn.datasets import load_digits

import fedjax_deep as fd

TINY = "--tiny" in sys.argv
WORKDIR = pathlib.Path(([a for a in sys.argv[1:] if a != "--tiny"] or [tempfile.mkdtemp()])[0])


def write_leaf(root: pathlib.Path, num_writers: int = 30, seed: int = 0) -> list[int]:
    """LEAF's layout from the digits: writer w holds 3 classes and between 5 and 100 examples."""
    rng = np.random.default_rng(seed)
    digits = load_digits()
    x, y = (digits.data / 16.0).round(3), digits.target
    sizes = np.geomspace(5, 100, num_writers).astype(int)
    split = {"train": {}, "test": {}}
    for w, n in enumerate(sizes):
        pool = np.flatnonzero(np.isin(y, rng.choice(10, 3, replace=False)))
        idx = rng.choice(pool, n + 2, replace=False)
        for name, part in (("train", idx[:n]), ("test", idx[n:])):
            split[name][f"f{w:04d}"] = {"x": x[part].tolist(), "y": y[part].tolist()}
    for name, users in split.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        blob = {"users": list(users), "num_samples": [len(u["y"]) for u in users.values()],
                "user_data": users}  # fmt: skip
        (root / name / f"digits_{name}.json").write_text(json.dumps(blob))
    return sizes.tolist()


sizes = write_leaf(WORKDIR / "leaf")
config = fd.default_config()
config.data.name, config.data.leaf_dir = "leaf", str(WORKDIR / "leaf")
config.data.partition, config.data.max_client_examples = "natural", 64
config.model.name, config.model.depth, config.model.width = "plain_mlp", 2, 8 if TINY else 64
config.model.norm = "none"  # GroupNorm groups of one feature (width 8) would output 0
config.fl.num_clients, config.fl.cohort_size = len(sizes), 10
config.fl.local_steps, config.fl.batch_size = 2 if TINY else 10, 16
config.num_rounds = 2 if TINY else 30
summary = fd.run(config, WORKDIR / "run", progress=not TINY)
info = json.loads((WORKDIR / "run" / "run_info.json").read_text())
print(f"{len(sizes)} writers of {min(sizes)}..{max(sizes)} examples, "
      f"capped at {config.data.max_client_examples}: clients of "
      f"{min(info['client_sizes'])}..{max(info['client_sizes'])}")  # fmt: skip
print(f"test accuracy {summary['final_accuracy']:.3f} after {config.num_rounds} rounds")
