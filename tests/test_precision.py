"""``config.precision``: what each policy compiles to, what it keeps in float32, and that it is
recorded; ``highest`` is what the equivalence tests pin (tests/conftest.py)."""

from __future__ import annotations

import json
import pathlib
import re

import jax
import jax.numpy as jnp
import pytest

from fedjax_deep import cli, experiment
from fedjax_deep.config import load_config

TINY = str(pathlib.Path(__file__).parents[1] / "configs" / "digits_tiny.py")


def _built(precision: str):
    config = load_config(TINY)
    config.precision = precision
    return experiment.build(config, experiment.prepare(config))


def _hlo(run) -> str:
    data, key = run.round_inputs(0)
    return jax.jit(run.round_fn).lower(run.state, data, key).as_text()


def _dots(text: str) -> list[str]:
    return [
        line
        for line in text.splitlines()
        if re.search(r"stablehlo\.(dot_general|convolution)", line)
    ]


def test_highest_pins_every_product_and_default_leaves_the_backends():
    # The suite runs at jax_default_matmul_precision=highest (conftest); 'default' must not add
    # its own pin, so look at it with the global setting cleared.
    with jax.default_matmul_precision(None):
        default = _dots(_hlo(_built("default")))
        highest = _dots(_hlo(_built("highest")))
    assert default and highest and len(default) == len(highest)
    assert all("HIGHEST" in line for line in highest)
    assert not any("HIGHEST" in line for line in default)


def test_bf16_computes_products_in_bfloat16_and_keeps_state_in_float32():
    run = _built("bf16")
    dots = _dots(_hlo(run))
    model_dots = [line for line in dots if "bf16" in line]
    # Every float32 product is a weighted sum over the 4 clients (averaging, divergence).
    client_sums = [line for line in dots if "(tensor<4xf32>, tensor<4x" in line]
    assert model_dots and len(model_dots) + len(client_sums) == len(dots)
    assert {x.dtype for x in jax.tree.leaves(run.state.params)} == {jnp.dtype(jnp.float32)}
    data, key = run.round_inputs(0)
    state, metrics = jax.jit(run.round_fn)(run.state, data, key)
    floats = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert {x.dtype for x in floats} == {jnp.dtype(jnp.float32)}
    assert metrics["train/loss"].dtype == jnp.float32


@pytest.mark.parametrize("precision", ["bf16", "highest"])
def test_each_policy_trains_and_is_recorded(tmp_path, precision):
    workdir = tmp_path / precision
    code = cli.main(["train", "--config", TINY, "--workdir", str(workdir), "--no-progress",
                     f"--config.precision={precision}", "--config.compile_cache=off"])  # fmt: skip
    assert code == 0
    assert json.loads((workdir / "run_info.json").read_text())["precision"] == precision
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["final_accuracy"] > 0.7  # digits_tiny reaches about 0.9 in float32
