"""The README's Python quickstart runs as written, in order, and does what its text says; so does
the sweep example in docs/design.md."""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)
DESIGN_BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "docs/design.md").read_text(), re.S)


def _run_quickstart() -> dict:
    namespace: dict = {}
    for block in BLOCKS:
        exec(compile(block, "README.md", "exec"), namespace)
    return namespace


def test_readme_quickstart_runs_and_does_what_it_says():
    ns = _run_quickstart()
    assert len(BLOCKS) == 3
    # The vmapped client step: one value per client.
    assert ns["metrics"]["loss"].shape == (4,)
    assert ns["metrics"]["num_steps"].tolist() == [3, 3, 3, 3]
    # Three FedAvg rounds on digits: finite, and per-layer divergence is logged.
    assert int(ns["sim"].round) == 3
    assert np.isfinite(float(ns["round_metrics"]["train/loss"]))
    assert any(k.startswith("divergence/") for k in ns["round_metrics"])
    # The sweep: three members, each with its own learning rate, each equal to its run alone.
    losses = ns["sweep_metrics"]["train/loss"]
    assert losses.shape == (3,) and len(set(np.asarray(losses).tolist())) == 3
    fd, fedavg = ns["fd"], ns["fedavg"]
    alone = fd.init_sim_state(ns["params"], ns["model_state"], fedavg,
                              client_hparams={**ns["hparams"], "learning_rate": jnp.float32(0.03)})  # fmt: skip
    _, alone_metrics = jax.jit(ns["round_fn"])(alone, ns["data"], jax.random.key(0))
    np.testing.assert_allclose(losses[1], alone_metrics["train/loss"], rtol=1e-5)


def test_design_sweep_example_groups_as_it_says():
    from fedjax_deep.sweep import expand, sweep_groups

    block = next(b for b in DESIGN_BLOCKS if "def get_config" in b)
    namespace: dict = {}
    exec(compile(block, "docs/design.md", "exec"), namespace)
    points = expand(namespace["get_config"]())
    assert len(points) == 24 and [len(g) for g in sweep_groups(points)] == [12, 12]
