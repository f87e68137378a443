"""The transformer family and the tinygrammar sequence data: shapes, causality, layer names,
a determinstic offline generator, learning beyond a bigram model, and the FL round on sequences."""

import pathlib
import socket

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import model_config
from fedjax_deep.config import ConfigError, config_errors, validate
from fedjax_deep.data import sequences, stack_clients
from fedjax_deep.fl import algorithms, init_sim_state, make_round
from fedjax_deep.losses import LOSSES, masked_loss, next_token_cross_entropy
from fedjax_deep.models import abstract_params, build_model

T, V = 8, len(sequences.VOCAB)


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
    """One layer = one module's kernel, named by block, in forward order."""
    model, params, _ = tiny_lm
    block = ("attn/qkv", "attn/out", "mlp/fc1", "mlp/fc2")
    expected = ("embed", *(f"blocks_{i}/{m}" for i in range(2) for m in block), "head")
    assert model.layers == expected
    assert [r["name"] for r in model.layer_table()] == list(expected)
    for name in expected:
        node = params
        for part in name.split("/"):
            node = node[part]
        assert "kernel" in node, name
    assert params["embed"]["kernel"].shape == (V, 8) and params["embed"]["pos"].shape == (T, 8)


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
    c.model.width, c.data.name = 32, "tinygrammar"
    with pytest.raises(ConfigError, match=r"config\.loss\.name='softmax_cross_entropy': .*use "
                       "next_token_cross_entropy"):  # fmt: skip
        validate(c)
    c.loss.name = "next_token_cross_entropy"
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


def test_next_token_cross_entropy_exact():
    """Per example: the mean over positions of -log softmax at the next token, and the share of
    positions whose arg-max is it; registered under its name; padding rows are masked out."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 4, 5))
    y = rng.integers(0, 5, (3, 4))
    y[0] = np.argmax(logits[0], -1)  # every position right in the first sequence
    with jax.enable_x64(True):
        loss, metrics = next_token_cross_entropy(jnp.asarray(logits), {"y": jnp.asarray(y)})
        log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        expected = -np.take_along_axis(log_p, y[..., None], -1)[..., 0].mean(-1)
        np.testing.assert_allclose(loss, expected, rtol=1e-12)
        np.testing.assert_array_equal(metrics["accuracy"], (np.argmax(logits, -1) == y).mean(-1))
        assert float(metrics["accuracy"][0]) == 1.0
        batch = {"y": jnp.asarray(y), "mask": jnp.array([True, True, False])}
        mean, num, sums = masked_loss(
            LOSSES["next_token_cross_entropy"], jnp.asarray(logits), batch
        )
        np.testing.assert_allclose(mean, expected[:2].mean(), rtol=1e-12)
        assert float(num) == 2.0


def test_fl_round_on_sequences_compiles_once(tiny_lm):
    """FedAvg on token sequences: two rounds, one trace; train accuracy is the token accuracy and
    the divergence metrics name every block's layers."""
    chex.clear_trace_counter()
    model, params, state = tiny_lm
    split = sequences.generate(12, T, 0)
    data = stack_clients(split.x, split.y, [np.arange(6), np.arange(6, 12)])
    assert data.x.shape == data.y.shape == (2, 6, T)
    rule = algorithms.fedavg(optax.sgd(1.0))
    round_fn = make_round(model, optax.sgd(0.1, momentum=0.9), rule, batch_size=3,
                          num_local_steps=2, grad_divergence=False,
                          loss_fn=LOSSES["next_token_cross_entropy"])  # fmt: skip
    step = jax.jit(chex.assert_max_traces(round_fn, n=1))
    server = init_sim_state(params, state, rule)
    for r in range(2):
        server, metrics = step(server, data, jax.random.key(r))
    assert 0.0 <= float(metrics["train/accuracy"]) <= 1.0
    assert np.isfinite(float(metrics["train/loss"]))
    kernels = [float(metrics[f"divergence/{name}/kernel/relative"]) for name in model.layers]
    assert all(np.isfinite(kernels)) and min(kernels) > 0.0
    # Position tables and LayerNorms are per-leaf entries, never layers: the mean is the kernels'.
    assert "divergence/embed/pos/relative" in metrics
    np.testing.assert_allclose(metrics["divergence/mean/relative"], np.mean(kernels), rtol=1e-5)


def test_two_blocks_beat_the_bigram_model():
    """The data is learnable beyond a bigram: 150 Adam steps of a 2-block width-32 transformer
    predict more next tokens on held-out windows than the bigram model counted on the same data."""
    seq_len = 16
    train, test = sequences.generate(1024, seq_len, 0), sequences.generate(256, seq_len, 1)
    bigram = sequences.bigram_accuracy(train, test)
    model, params, state = build((seq_len,), V, name="transformer", depth=2, width=32, heads=4)
    opt = optax.adam(0.01)
    tx, ty = jnp.asarray(train.x), jnp.asarray(train.y)

    def loss(p, x, y):
        logits = model.apply(p, state, x, train=True)[0]
        per_example, metrics = next_token_cross_entropy(logits, {"y": y})
        return jnp.mean(per_example), jnp.mean(metrics["accuracy"])

    @jax.jit
    def train_and_test(p, key):
        def step(carry, k):
            p, o = carry
            idx = jax.random.choice(k, len(tx), (32,), replace=False)
            g = jax.grad(lambda p: loss(p, tx[idx], ty[idx])[0])(p)
            u, o = opt.update(g, o, p)
            return (optax.apply_updates(p, u), o), None

        before = loss(p, test.x, test.y)
        (p, _), _ = jax.lax.scan(step, (p, opt.init(p)), jax.random.split(key, 150))
        return before, loss(p, test.x, test.y)

    (loss0, _), (loss1, acc) = train_and_test(params, jax.random.key(1))
    assert float(loss1) < float(loss0) - 1.0
    assert 0.15 < bigram < 0.3
    assert float(acc) > bigram + 0.05, (float(acc), bigram)


def test_partitions_and_validation_split_read_the_topic():
    """Sequence targets [N, T] are no class labels: the dirichlet partition, its statistics and
    the stratified validation split read each sequence's topic (Dataset.strata)."""
    from fedjax_deep.data import Dataset, dirichlet, partition_stats, split_validation

    split = sequences.generate(400, 8, 0)
    data = Dataset("tinygrammar", split.x, split.y, split.x[:4], split.y[:4], V,
                   train_groups=split.topics)  # fmt: skip
    np.testing.assert_array_equal(data.strata, split.topics)
    with_val = split_validation(data, 0.25, np.random.default_rng(0))
    for k in range(sequences.NUM_TOPICS):  # a quarter of every topic, rows kept whole
        n_k = int(np.sum(split.topics == k))
        assert int(np.sum(with_val.train_groups == k)) == n_k - round(n_k * 0.25)
    assert with_val.val_y.shape[1:] == (8,) and len(with_val.train_groups) == len(with_val.train_y)
    parts = dirichlet(data.strata, 4, 0.1, np.random.default_rng(0))
    hist = np.asarray(partition_stats(parts, data.strata, V)["class_histogram"])
    assert hist.sum() == 400 and hist[:, sequences.NUM_TOPICS :].sum() == 0
    assert np.mean(hist.max(1) / hist.sum(1)) > 0.6  # alpha 0.1: clients dominated by a topic
    no_groups = Dataset("seq", split.x, split.y, split.x, split.y, V)
    np.testing.assert_array_equal(no_groups.strata, np.zeros(400))


def test_the_depth_sweep_config_validates():
    from fedjax_deep.config import load_config
    from fedjax_deep.sweep import expand

    path = pathlib.Path(__file__).parents[1] / "configs" / "tinygrammar_transformer.py"
    for arg in ("", "quick"):
        config = load_config(f"{path}:{arg}" if arg else path)
        validate(config)
        assert config.loss.name == "next_token_cross_entropy"
    assert len(expand(config)) == 4 * 2  # quick: depths x {fl, centralized}, one seed
