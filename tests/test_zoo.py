"""The model zoo: published parameter counts, receptive fields, training under the round, BN policy."""

import hashlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from conftest import model_config
from fedjax_deep.config import ConfigError, config_errors
from fedjax_deep.data import stack_clients
from fedjax_deep.fl import algorithms, clients, init_sim_state, make_round
from fedjax_deep.models import (
    Conv,
    abstract_params,
    build_model,
    flops_per_example,
    param_count,
    receptive_field,
)

IMAGENET = dict(stem_kernel=7, stem_stride=2, stem_pool=True, norm="batch")
PUBLISHED = [
    ("resnet", 18, IMAGENET, 11_689_512),
    ("resnet", 34, IMAGENET, 21_797_672),
    ("resnet", 50, IMAGENET, 25_557_032),
    ("resnet", 101, IMAGENET, 44_549_160),
    ("resnet", 152, IMAGENET, 60_192_808),
    ("vgg", 11, dict(norm="none", head_pool=7, classifier=(4096, 4096)), 132_863_336),
    ("vgg", 16, dict(norm="none", head_pool=7, classifier=(4096, 4096)), 138_357_544),
    ("vgg", 19, dict(norm="none", head_pool=7, classifier=(4096, 4096)), 143_667_240),
]


@pytest.mark.parametrize("name,depth,knobs,expected", PUBLISHED)
def test_parameter_counts_match_torchvision(name, depth, knobs, expected):
    cfg = model_config(name=name, depth=depth, **knobs)
    assert param_count(abstract_params(cfg, (224, 224, 3), 1000)) == expected


def _last_conv_support(cfg, size):
    """Extent (pixels) of the input-gradient support of one central unit of the last conv."""
    model, params, state = build_model(cfg, (size, size, 1), 10, jax.random.key(0))
    # Positive weights and inputs, no normalization: every ReLU is active, so the support is the
    # structural receptive field and nothing is cancelled by chance.
    params = jax.tree.map(jnp.abs, params)
    module_convs = []
    original = Conv.__call__

    def recording(self, x):
        y = original(self, x)
        module_convs.append(y)
        return y

    def central_unit(x):
        module_convs.clear()
        model.apply(params, state, x, train=False)
        last = module_convs[-1]  # the last block has no projection: this is its last conv
        h, w = last.shape[1] // 2, last.shape[2] // 2
        return jnp.sum(last[0, h, w])

    Conv.__call__ = recording
    try:
        grad = jax.grad(central_unit)(jnp.ones((1, size, size, 1)))
    finally:
        Conv.__call__ = original
    rows = np.flatnonzero(np.any(np.asarray(grad[0, :, :, 0]) != 0, axis=1))
    cols = np.flatnonzero(np.any(np.asarray(grad[0, :, :, 0]) != 0, axis=0))
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1, model.receptive_field


RF_CASES = [
    dict(name="plain_cnn", depth=4, width=2, norm="none", kernel_size=3),
    dict(name="plain_cnn", depth=3, width=2, norm="none", kernel_size=5, stem_kernel=7),
    dict(name="plain_cnn", depth=3, width=2, norm="none", stem_kernel=7, stem_stride=2,
         stem_pool=True),
    # the stem pool after the only convolution is not on its path
    dict(name="plain_cnn", depth=1, width=2, norm="none", stem_kernel=7, stem_stride=2,
         stem_pool=True),
    dict(name="resnet", depth=18, width_mult=1 / 32, norm="none"),
    dict(name="resnet", depth=18, width_mult=1 / 32, norm="none", stem_kernel=5, stem_stride=2),
    dict(name="vgg", depth=11, width_mult=1 / 32, norm="none", kernel_size=1),
]  # fmt: skip


@pytest.mark.parametrize("knobs", RF_CASES, ids=lambda k: "-".join(map(str, k.values())))
def test_receptive_field_equals_gradient_support(knobs):
    cfg = model_config(**knobs)
    size = 2 * 128 if knobs["name"] == "resnet" and knobs.get("stem_stride") == 2 else 128
    rows, cols, theory = _last_conv_support(cfg, size)
    assert rows == cols == theory, (rows, cols, theory)


def test_receptive_field_formula():
    assert receptive_field([(3, 1, 1)] * 4) == 9
    assert receptive_field([(7, 2, 1), (3, 2, 1)]) == 7 + 2 * 2  # the ImageNet stem: 11
    assert receptive_field([(3, 1, 2)]) == 5


FAMILIES = [  # (knobs, kernel-owning layers: convs/linears + projection shortcuts + head)
    (dict(name="plain_cnn", depth=3, width=4, skip=True), 4),
    (dict(name="plain_mlp", depth=3, width=16, norm="layer"), 4),
    (dict(name="vgg", depth=11, width_mult=1 / 16, norm="batch"), 9),  # 8 convs, CIFAR head
    (dict(name="resnet", depth=18, width_mult=1 / 16, norm="group", norm_groups=2), 21),
    (dict(name="resnet", depth=50, width_mult=1 / 16, norm="batch"), 54),
]


@pytest.mark.parametrize(
    "knobs,num_layers", FAMILIES, ids=[f"{k['name']}{k['depth']}" for k, _ in FAMILIES]
)
def test_every_family_trains_under_the_round_and_compiles_once(knobs, num_layers):
    chex.clear_trace_counter()  # the counter is keyed by function name across parametrized cases
    size = 32 if knobs["name"] == "vgg" else 8
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, size, size, 3)).astype(np.float32)
    y = rng.integers(0, 10, 12).astype(np.int32)
    data = stack_clients(x, y, [np.arange(6), np.arange(6, 12)])
    model, params, state = build_model(model_config(**knobs), x.shape[1:], 10, jax.random.key(0))
    opt = optax.sgd(0.05, momentum=0.9)
    rule = algorithms.fedavg(optax.sgd(1.0))
    # The 53-layer ResNet-50 compiles without the divergence metrics to keep the suite fast; its
    # bottleneck blocks are what this case adds, and divergence is checked on the others.
    divergence = knobs["depth"] != 50
    round_fn = make_round(model, opt, rule, batch_size=3, num_local_steps=2, divergence=divergence)
    step = jax.jit(chex.assert_max_traces(round_fn, n=1))
    server = init_sim_state(params, state, rule)
    losses = []
    for r in range(2):
        server, metrics = step(server, data, jax.random.key(r))
        losses.append(float(metrics["train/loss"]))
        if divergence:
            assert np.isfinite(float(metrics["divergence/mean/relative"]))
    assert all(np.isfinite(losses))
    assert not jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), params, server.params))
    assert model.layers[-1] == "head" and len(model.layers) == num_layers
    for name in model.layers:  # every listed layer owns a kernel and gets divergence entries
        node = server.params
        for part in name.split("/"):
            node = node[part]
        assert "kernel" in node, name
        if divergence:
            assert f"divergence/{name}/kernel/relative" in metrics


@pytest.mark.parametrize(
    "knobs", [k for k, _ in FAMILIES[:4]], ids=[f"{k['name']}{k['depth']}" for k, _ in FAMILIES[:4]]
)
def test_representations_name_every_layer_in_order_and_end_in_the_logits(knobs):
    size = 32 if knobs["name"] == "vgg" else 8
    x = np.random.default_rng(0).standard_normal((5, size, size, 3)).astype(np.float32)
    model, params, state = build_model(model_config(**knobs), x.shape[1:], 10, jax.random.key(0))
    reps = model.representations(params, state, x)  # eager: jit returns a dict's keys sorted
    names = list(reps)
    assert names[-1] == "head" and all(v.shape[0] == 5 for v in reps.values())
    if knobs["name"] == "resnet":  # the stem, then every block's output
        module = nnx.merge(model.graphdef, params, state)
        assert names == ["stem", *module.block_names, "head"]
    else:  # one per kernel-owning layer, the divergence metrics' names
        assert tuple(names) == model.layers
    logits, _ = model.apply(params, state, x, train=False)
    np.testing.assert_allclose(reps["head"], logits, rtol=1e-5, atol=1e-6)


def test_layer_table_and_flops():
    cfg = model_config(name="resnet", depth=18, width_mult=1 / 16)
    model, params, state = build_model(cfg, (16, 16, 3), 10, jax.random.key(0))
    table = model.layer_table()
    assert table[0]["name"] == "stem" and table[-1]["name"] == "head"
    assert table[-1]["relative_depth"] == 1.0 and table[0]["index"] == 1
    assert "stage2_block0/shortcut" in model.layers  # projection where the shape changes
    assert len([n for n in model.layers if "conv" in n]) == 16  # 8 basic blocks x 2
    flops = flops_per_example(model, params, state, (16, 16, 3))
    stem = 2 * 16 * 16 * 9 * 3 * 4  # the stem alone: 3x3, 3 -> 4 channels at 16x16
    assert flops > stem


def _bn_setup():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 8, 8, 1)).astype(np.float32) * np.repeat([1.0, 3.0], 8)[
        :, None, None, None
    ].astype(np.float32)
    y = rng.integers(0, 10, 16).astype(np.int32)
    data = stack_clients(x, y, [np.arange(6), np.arange(6, 16)])  # unequal: weights 6/16, 10/16
    model, params, state = build_model(
        model_config(depth=2, width=4, norm="batch"), (8, 8, 1), 10, jax.random.key(0)
    )
    rule = algorithms.fedavg(optax.sgd(1.0))
    round_fn = jax.jit(make_round(model, optax.sgd(0.05), rule, batch_size=4, num_local_steps=3))
    return data, params, state, rule, round_fn


def test_batchnorm_average_is_the_weighted_mean_and_fedbn_keeps_client_stats():
    data, params, state, rule, round_fn = _bn_setup()
    key = jax.random.key(0)
    avg, _ = round_fn(init_sim_state(params, state, rule), data, key)
    local0 = init_sim_state(params, state, rule, num_clients=2, local_model_state=True)
    local, _ = round_fn(local0, data, key)
    weights = jnp.array([6 / 16, 10 / 16])
    # Same start, same batches: the clients' statistics agree, so the averaged policy's server
    # statistics are exactly the weighted mean of what FedBN keeps per client.
    chex.assert_trees_all_close(avg.model_state, clients.weighted_mean(local.clients['model_state'], weights),
                                atol=1e-6)  # fmt: skip
    chex.assert_trees_all_close(local.model_state, avg.model_state, atol=1e-6)
    per_client = local.clients["model_state"]["norm_0"]["var"]
    assert not np.allclose(per_client[0], per_client[1])  # the clients' data differ in scale
    # FedBN: round 2 starts every client from its own statistics, not the average.
    local2, _ = round_fn(local, data, jax.random.key(1))
    avg_start = local.replace(
        clients={
            "model_state": jax.tree.map(
                lambda a: jnp.broadcast_to(a, (2, *a.shape)), local.model_state
            )
        }
    )
    from_avg, _ = round_fn(avg_start, data, jax.random.key(1))
    assert not np.allclose(
        local2.clients["model_state"]["norm_0"]["mean"],
        from_avg.clients["model_state"]["norm_0"]["mean"],
    )


@pytest.mark.parametrize(
    "knobs,field",
    [
        (dict(name="vgg", depth=12), "model.depth"),
        (dict(name="resnet", depth=20), "model.depth"),
        (dict(name="resnet", depth=18, width_mult=0.001), "model.width_mult"),
        (dict(name="vgg", depth=11, width_mult=0.005), "model.width_mult"),
        (dict(name="resnet", depth=18, stem_stride=16), "model.stem_stride"),
        (dict(name="vgg", depth=11), "model.depth"),  # 8x8 is below VGG's 32-pixel minimum
    ],
)
def test_bad_knobs_fail_at_config_time(knobs, field):
    # The library raises a plain ValueError (a FieldError); the config layer names it config.<field>.
    with pytest.raises(ValueError) as exc:
        build_model(model_config(**knobs), (8, 8, 1), 10, jax.random.key(0))
    assert not isinstance(exc.value, ConfigError) and exc.value.field == field
    assert len(str(exc.value).splitlines()) == 1 and str(exc.value).startswith(f"{field}=")
    with pytest.raises(ConfigError) as exc, config_errors():
        build_model(model_config(**knobs), (8, 8, 1), 10, jax.random.key(0))
    assert str(exc.value).startswith(f"config.{field}=")


# Pinned fingerprints. RECORDED FROM THE PRE-REFACTOR CODE (the per-family builders and __call__s
# before the Classifier plan, commit 2d93261) by running _fingerprint below on it; the plan-based
# families reproduce them bit for bit. Parameter paths are what checkpoints and the divergence
# metrics key on, so a change here is a format change, not a refactor.
PINNED_CASES = {  # name: (knobs, input shape): every family at a small size, most knobs exercised
    "plain_cnn": (dict(name="plain_cnn", depth=3, width=4, skip=True), (8, 8, 3)),
    "plain_cnn_stem": (dict(name="plain_cnn", depth=3, width=4, skip=True, skip_before_relu=True,
                            norm="batch", stem_kernel=5, stem_stride=2, stem_pool=True,
                            head="avgpool"), (12, 12, 3)),
    "plain_cnn_1d": (dict(name="plain_cnn", depth=2, kernel_size=5, widths=(4, 6), strides=(1, 2),
                          norm="layer", conv_impl="native"), (40, 1)),
    "plain_mlp": (dict(name="plain_mlp", depth=3, width=16, norm="layer", skip=True), (8, 8, 3)),
    "vgg11": (dict(name="vgg", depth=11, width_mult=1 / 16, norm="batch", classifier=(8,)),
              (32, 32, 3)),
    "resnet18": (dict(name="resnet", depth=18, width_mult=1 / 16, norm="group", norm_groups=2),
                 (8, 8, 3)),
    "resnet50": (dict(name="resnet", depth=50, width_mult=1 / 16, norm="batch", stem_kernel=7,
                      stem_stride=2, stem_pool=True), (16, 16, 3)),
}  # fmt: skip


def _fingerprint(knobs, input_shape):
    """Parameter and statistic paths with their shapes, a sha256 prefix of that list, the receptive
    field, and float64 sums of the parameters, the train-mode logits and updated statistics, the
    eval-mode logits and every representation."""
    model, params, state = build_model(model_config(**knobs), input_shape, 10, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4, *input_shape))

    @jax.jit
    def forward(params, state, x):  # one program: eval mode is the representations' (head: logits)
        logits, new_state = model.apply(params, state, x, train=True)
        return logits, new_state, model.representations(params, state, x)

    logits, new_state, reps = forward(params, state, x)
    leaves = jax.tree_util.tree_flatten_with_path({"params": params, "model_state": state})[0]
    paths = [("/".join(str(k.key) for k in p), tuple(a.shape)) for p, a in leaves]
    digest = hashlib.sha256(repr(paths).encode()).hexdigest()[:16]
    sums = [float(sum(np.sum(np.asarray(a, np.float64)) for a in jax.tree.leaves(tree)))
            for tree in (params, logits, new_state, reps["head"], reps)]  # fmt: skip
    return paths, digest, model.receptive_field, sums


# name: (number of param/statistic leaves, sha256 prefix of their (path, shape) list, receptive
#   field, float64 sums of [params, train logits, updated statistics, eval logits, representations])
PINNED = {
    "plain_cnn": (11, "50681372bf9a002d", 7, [16.329163619027668, -5.361027032136917, 0.0, -5.361027032136917, 2444.1011548605748]),
    "plain_cnn_stem": (17, "ca0631b74b654b53", 25, [14.417155544040725, -6.449418723583221, 12.623137709844741, -7.87027171254158, 868.8181788045913]),
    "plain_cnn_1d": (8, "38594f7cc9673697", 9, [11.413943374878727, 4.031602174043655, 0.0, 4.031602174043655, 476.7245532758534]),
    "plain_mlp": (14, "594624dcb546fb05", None, [50.260444747822476, 28.708201721310616, 0.0, 28.708201721310616, 186.13925731927156]),
    "vgg11": (44, "a16a262961d39b50", 134, [172.78461390495835, -13.575751006603241, 168.09639913171122, -12.610793873667717, 29324.801065683525]),
    "resnet18": (62, "a2767e87461e53ae", 109, [334.02580329288253, -20.437244221568108, 0.0, -20.437244221568108, 3072.418286949338]),
    "resnet50": (267, "04353a60ab54672a", 427, [1732.348097667156, 7.377406075596809, 1684.662146177438, 147.17688512802124, 41308.27284369012]),
}  # fmt: skip


@pytest.mark.parametrize("name", list(PINNED))
def test_families_keep_their_parameter_paths_and_numbers(name):
    num_leaves, want_digest, want_rf, want_sums = PINNED[name]
    paths, digest, rf, sums = _fingerprint(*PINNED_CASES[name])
    assert (len(paths), digest) == (num_leaves, want_digest), paths
    assert rf == want_rf
    loose = {1} if name == "resnet50" else set()
    # Train-mode BatchNorm over 4 values per channel at ResNet-50's 1x1 stages amplifies float32
    # rounding, which differs between machines of this project's kind: the train logits' sum (a
    # cancelling sum) moved 1.6% from the pinned value on one of them while every other number
    # agreed to 1e-6. It keeps a loose check; every other number keeps 1e-5.
    for i, (got, want) in enumerate(zip(sums, want_sums, strict=True)):
        np.testing.assert_allclose(got, want, rtol=3e-2 if i in loose else 1e-5, atol=1e-5)
