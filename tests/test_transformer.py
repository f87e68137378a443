"""The transformer family and the tinygrammar sequence data: shapes, causality, layer names,
a determinstic offline generator, learning beyond a bigram model, and the FL round on sequences."""

import socket

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import model_config
from fedjax_deep.config import ConfigError, config_errors, validate
from fedjax_deep.data import sequences
from fedjax_deep.metrics.divergence import divergence_metrics
from fedjax_deep.models import abstract_params, build_model

T, V = 8, len(sequences.VOCAB)


def next_token_loss(logits, batch):
    """Per-example mean cross entropy over positions and mean token accuracy (the test's own copy
    of losses.next_token_cross_entropy until the loss interface lands)."""
    per_token = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
    correct = (jnp.argmax(logits, -1) == batch["y"]).astype(logits.dtype)
    return jnp.mean(per_token, -1), {"accuracy": jnp.mean(correct, -1)}


def build(input_shape, num_classes, **knobs):
    """``build_model`` with its initializers jitted (one program instead of hundreds of eager ops)."""
    holder = {}

    def init(key):
        model, params, state = build_model(model_config(**knobs), input_shape, num_classes, key)
        holder["model"] = model
        return params, state

    params, state = jax.jit(init)(jax.random.key(0))
    return holder["model"], params, state


@pytest.fixture(scope="module")
def tiny_lm():
    return build((T,), V, name="transformer", depth=2, width=8, heads=2)


def forward(model, params, state, x, dtype=None):
    if dtype is not None:
        model = model.with_compute_dtype(dtype)
    return jax.jit(lambda p, x: model.apply(p, state, x, train=False)[0])(params, x)


def test_transformer_logits_per_position(tiny_lm):
    model, params, state = tiny_lm
    x = jnp.asarray(sequences.generate(3, T, 0).x)
    logits, new_state = jax.jit(lambda p, x: model.apply(p, state, x, train=True))(params, x)
    assert logits.shape == (3, T, V) and logits.dtype == jnp.float32 and new_state == {}


def test_attention_is_causal(tiny_lm):
    """Changing token t leaves every logit before t bit for bit unchanged, and changes t's."""
    model, params, state = tiny_lm
    x = jnp.asarray(sequences.generate(2, T, 0).x)
    positions = (0, 3, T - 1)
    variants = [x] + [x.at[:, t].set((x[:, t] + 1) % V) for t in positions]
    out = forward(model, params, state, jnp.concatenate(variants)).reshape(-1, 2, T, V)
    base = out[0]
    for t, changed in zip(positions, out[1:], strict=True):
        np.testing.assert_array_equal(changed[:, :t], base[:, :t])
        assert np.all(np.abs(changed[:, t] - base[:, t]).max(-1) > 1e-4)


def test_vit_sees_every_patch():
    """ViT: logits [B, classes]; no mask, so the last patch changes the class token's prediction."""
    model, params, state = build((8, 8, 1), 10, name="vit", depth=1, width=8, heads=2,
                                 patch_size=4, pool="cls")  # fmt: skip
    x = jax.random.normal(jax.random.key(2), (3, 8, 8, 1))
    both = forward(model, params, state, jnp.concatenate([x, x.at[:, 4:, 4:].set(0.0)]))
    logits, other = both[:3], both[3:]
    assert logits.shape == (3, 10)
    assert np.all(np.abs(other - logits).max(-1) > 1e-4)
    assert params["embed"]["kernel"].shape == (16, 8)  # 4x4x1 patches -> width 8
    assert params["embed"]["pos"].shape == (5, 8)  # the class token + 4 patches
    mean_pool = abstract_params(model_config(name="vit", depth=1, width=8, heads=2, pool="mean"),
                                (8, 8, 1), 10)  # fmt: skip
    assert mean_pool["embed"]["pos"].shape == (4, 8) and "cls" not in mean_pool["embed"]


def test_parameter_paths_name_blocks(tiny_lm):
    """One layer = one module's kernel, named by block, in forward order; divergence keys follow."""
    model, params, _ = tiny_lm
    block = ("attn/qkv", "attn/out", "mlp/fc1", "mlp/fc2")
    expected = ("embed", *(f"blocks_{i}/{m}" for i in range(2) for m in block), "head")
    assert model.layers == expected
    assert [r["name"] for r in model.layer_table()] == list(expected)
    client = jax.tree.map(lambda a: jnp.stack([a, a + 0.01 * jnp.sign(a)]), params)
    out = jax.jit(lambda c, g: divergence_metrics(c, g, jnp.array([0.5, 0.5]), model.layers))(
        client, params
    )
    for name in expected:
        assert f"divergence/{name}/kernel/update" in out
    # Position tables and LayerNorms are leaves, never layers: the mean is over the 10 kernels.
    kernels = [out[f"divergence/{n}/kernel/relative"] for n in expected]
    np.testing.assert_allclose(out["divergence/mean/relative"], np.mean(kernels), rtol=1e-6)
    assert "divergence/embed/pos/relative" in out


def test_bf16_policy_keeps_token_ids(tiny_lm):
    """Under bf16 the input is cast to bfloat16; ids up to 256 survive, so logits stay close."""
    model, params, state = tiny_lm
    x = jnp.asarray(sequences.generate(2, T, 0).x)
    full = forward(model, params, state, x)
    half = forward(model, params, state, x, jnp.bfloat16)
    assert half.dtype == jnp.float32
    np.testing.assert_allclose(half, full, atol=0.05)


def test_bad_transformer_configs_name_the_field():
    with pytest.raises(ConfigError, match=r"config\.model\.name='transformer'"), config_errors():
        build_model(model_config(name="transformer", depth=1, width=8, heads=2), (8, 8, 1), 10,
                    jax.random.key(0))  # fmt: skip
    with pytest.raises(ConfigError, match=r"config\.model\.patch_size=3"), config_errors():
        build_model(model_config(name="vit", depth=1, width=8, heads=2, patch_size=3),
                    (8, 8, 1), 10, jax.random.key(0))  # fmt: skip
    from fedjax_deep.config import default_config

    c = default_config()
    c.model.name, c.model.width, c.model.heads = "transformer", 30, 4
    with pytest.raises(ConfigError, match=r"config\.model\.heads=4: must divide model\.width=30"):
        validate(c)


def test_generator_is_deterministic_and_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tinygrammar touched the network")

    monkeypatch.setattr(socket, "socket", no_network)
    a, b, c = (sequences.generate(50, 16, s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.topics, b.topics)
    assert not np.array_equal(a.x, c.x)
    assert a.x.shape == a.y.shape == (50, 16) and a.x.dtype == np.int32
    np.testing.assert_array_equal(a.x[:, 1:], a.y[:, :-1])  # y is x shifted by one
    assert a.x.min() >= 0 and a.x.max() < V
    assert set(np.unique(a.topics)) <= set(range(sequences.NUM_TOPICS))


def test_grammar_agreement_holds():
    """Every verb agrees with its sentence's subject noun, across a relative clause."""
    split = sequences.generate(200, 32, 3)
    singular_verbs = {v + "s" for v in sequences.VERB_STEMS}
    checked = 0
    for row in np.concatenate([split.x, split.y[:, -1:]], axis=1):
        words = sequences.decode(row).split()
        start = 0
        for end in [i for i, w in enumerate(words) if w == "."]:
            sentence = words[start:end]
            start = end + 1
            subject = next(w for w in sentence if w.rstrip("s") in sequences.NOUN_STEMS)
            verbs = [w for w in sentence if w in singular_verbs or w in sequences.VERB_STEMS]
            for verb in verbs:
                assert (verb in singular_verbs) == (subject in sequences.NOUN_STEMS), sentence
                checked += 1
    assert checked > 500
