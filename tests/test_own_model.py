"""Own models: any NNX module (train=/mask= optional), layers from parameter paths in forward
order, registered after import and run by name through the Python runner."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import fedjax_deep as fd
from fedjax_deep.data import register_arrays
from fedjax_deep.data.sources import DATASETS
from fedjax_deep.errors import ConfigError
from fedjax_deep.models import MODELS, from_functions, register_model, wrap_module


class TwoLayer(nnx.Module):
    """Attribute names that sort against the forward order; no train=/mask= keywords."""

    def __init__(self, din, dout, rngs, hidden=4):
        self.z_in = nnx.Linear(din, hidden, rngs=rngs)
        self.a_out = nnx.Linear(hidden, dout, rngs=rngs)

    def __call__(self, x):
        return self.a_out(jax.nn.relu(self.z_in(x.reshape(len(x), -1))))


def test_layers_in_forward_order_and_the_module_called_without_keywords():
    model, params, state = wrap_module(TwoLayer(3, 2, nnx.Rngs(0)), input_shape=(3,))
    assert model.layers == ("z_in", "a_out") and model.call_kwargs == () and state == {}
    x = jnp.ones((5, 3))
    out, _ = model.apply(params, state, x, train=True, mask=jnp.ones(5, bool))
    np.testing.assert_allclose(out, nnx.merge(model.graphdef, params, state)(x), rtol=1e-6)


def test_init_apply_pair():
    def init(key, x):
        return {"first": {"kernel": jax.random.normal(key, (x.shape[-1], 2))}, "bias": jnp.zeros(2)}

    model, params, _ = from_functions(init, lambda p, x: x @ p["first"]["kernel"] + p["bias"][None],
                                      (3,), jax.random.key(0))  # fmt: skip
    assert model.layers == ("first",)
    out, _ = model.apply(params, {}, jnp.ones((4, 3)), train=False)
    assert out.shape == (4, 2)


@pytest.fixture
def own_study():
    """A model and arrays registered after import (natural clients of unequal sizes)."""
    register_model("test_two_layer",
                   lambda cfg, shape, k, rngs: TwoLayer(int(np.prod(shape)), k, rngs, cfg.width))  # fmt: skip
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    register_arrays("test_arrays", x, y, client_ids=rng.integers(0, 3, 40))
    c = fd.default_config()
    c.model.name, c.model.width = "test_two_layer", 4
    c.data.name, c.data.partition = "test_arrays", "natural"
    c.fl.num_clients, c.fl.local_steps, c.fl.batch_size, c.num_rounds = 3, 2, 8, 1
    c.compile_cache = "off"
    yield c
    del MODELS["test_two_layer"], DATASETS["test_arrays"]


def test_registered_model_runs_by_name_through_the_runner(own_study, tmp_path):
    """FL and its null reference (independent clients), the fast sibling of the examples
    own_model_own_arrays.py and own_model_divergence.py."""
    own_study.sweep, own_study.num_rounds = (("mode", ("fl", "independent")),), 2
    fd.run(own_study, tmp_path, progress=False)
    rows, info = {}, {}
    for mode in ("fl", "independent"):
        run = tmp_path / f"mode-{mode}"
        rows[mode] = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
        info[mode] = json.loads((run / "run_info.json").read_text())
        assert any((run / "checkpoints").iterdir())  # the own model checkpoints
    assert info["fl"]["layers"] == ["z_in", "a_out"] and len(info["fl"]["client_sizes"]) == 3
    assert sum(info["fl"]["client_sizes"]) == 32  # the 8 others are the test split
    assert {"divergence/z_in/kernel/relative", "divergence/mean/relative", "eval/accuracy",
            "train/accuracy"} <= set(rows["fl"][-1]) & set(rows["independent"][-1])  # fmt: skip
    # Round 1 trains the same clients from the same model in both modes; after that FL averages.
    key = "divergence/a_out/kernel/relative"
    assert rows["fl"][0][key] == rows["independent"][0][key]
    assert rows["fl"][1][key] != rows["independent"][1][key]


def test_wrong_output_shape_is_one_line_and_nothing_written(own_study, tmp_path):
    register_model("test_two_layer",
                   lambda cfg, shape, k, rngs: TwoLayer(int(np.prod(shape)), k + 1, rngs))  # fmt: skip
    with pytest.raises(ConfigError, match=r"outputs \[B, 3\] where softmax_cross_entropy needs "
                       r"logits \[B, 2\]") as e:  # fmt: skip
        fd.run(own_study, tmp_path / "run", progress=False)
    assert "\n" not in str(e.value) and not (tmp_path / "run").exists()


def test_loss_of_the_wrong_shape_is_one_line_and_nothing_written(own_study, tmp_path):
    from fedjax_deep import losses

    losses.register_loss("test_mean_loss", lambda out, batch: (out.mean(), {}))
    own_study.loss.name = "test_mean_loss"
    try:
        with pytest.raises(ConfigError, match=r"loss returned shape \(\) where one value per "
                           r"example \(2,\) is needed") as e:  # fmt: skip
            fd.run(own_study, tmp_path / "run", progress=False)
    finally:
        del losses.LOSSES["test_mean_loss"]
    assert "\n" not in str(e.value) and not (tmp_path / "run").exists()
