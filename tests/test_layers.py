"""The im2col convolution against lax.conv_general_dilated; the plain CNN and its norms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import model_config
from fedjax_deep.models import build_model, conv_im2col

CASES = [
    # spatial rank, input size, window, strides, padding, dilation
    (2, 8, 3, 1, "SAME", 1),
    (2, 9, 3, 2, "SAME", 1),
    (2, 11, 5, 2, "VALID", 2),
    (2, 12, 7, 2, ((3, 3), (3, 3)), 1),
    (2, 7, 1, 1, "SAME", 1),
    (2, 10, 4, 3, "SAME", 1),
    (1, 40, 5, 1, "SAME", 1),
    (1, 17, 3, 2, "VALID", 3),
    # stride 1 takes the custom-VJP path: dilation, VALID and asymmetric explicit padding
    (2, 9, 3, 1, "VALID", 2),
    (2, 8, 3, 1, ((2, 0), (1, 1)), 1),
    (1, 20, 5, 1, "SAME", 2),
    (2, 6, 3, 1, ((4, 4), (0, 0)), 1),  # padding past the window: the plain path
]


def _reference(x, w, strides, padding, dilation):
    nd = x.ndim - 2
    spec = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}[nd]
    return jax.lax.conv_general_dilated(
        x, w, (strides,) * nd, padding, rhs_dilation=(dilation,) * nd, dimension_numbers=spec
    )


@pytest.mark.parametrize("nd,size,window,strides,padding,dilation", CASES)
def test_conv_matches_lax_values_and_grads(nd, size, window, strides, padding, dilation):
    kx, kw, kc = jax.random.split(jax.random.key(nd * 100 + size), 3)
    x = jax.random.normal(kx, (3,) + (size,) * nd + (4,))
    w = jax.random.normal(kw, (window,) * nd + (4, 5)) / window
    ours = conv_im2col(x, w, strides, padding, dilation)
    ref = _reference(x, w, strides, padding, dilation)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=1e-5)

    cot = jax.random.normal(kc, ref.shape)

    def loss(f):
        return lambda x, w: jnp.sum(f(x, w, strides, padding, dilation) * cot)

    gx, gw = jax.grad(loss(conv_im2col), argnums=(0, 1))(x, w)
    rx, rw = jax.grad(loss(_reference), argnums=(0, 1))(x, w)
    np.testing.assert_allclose(gx, rx, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(gw, rw, atol=1e-4, rtol=1e-5)


def test_conv_under_vmap_over_client_kernels():
    x = jax.random.normal(jax.random.key(0), (4, 2, 8, 8, 3))
    w = jax.random.normal(jax.random.key(1), (4, 3, 3, 3, 6))
    ours = jax.vmap(conv_im2col)(x, w)
    ref = jnp.stack([_reference(x[c], w[c], 1, "SAME", 1) for c in range(4)])
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm", ["none", "group", "batch"])
@pytest.mark.parametrize("skip", [False, True])
def test_plain_cnn_shapes_and_layers(norm, skip):
    cfg = model_config(depth=3, width=8, norm=norm, skip=skip)
    model, params, state = build_model(cfg, (8, 8, 1), 10, jax.random.key(0))
    assert model.layers == ("conv_0", "conv_1", "conv_2", "head")
    assert params["conv_1"]["kernel"].shape == (3, 3, 8, 8)
    assert ("bias" in params["conv_0"]) == (norm == "none")
    assert bool(state) == (norm == "batch")
    logits, new_state = model.apply(params, state, jnp.ones((5, 8, 8, 1)), train=True)
    assert logits.shape == (5, 10)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)


def test_plain_cnn_1d_and_avgpool_head():
    cfg = model_config(depth=2, width=4, kernel_size=5, head="avgpool")
    model, params, _ = build_model(cfg, (40, 1), 10, jax.random.key(0))
    assert params["conv_0"]["kernel"].shape == (5, 1, 4)
    assert params["head"]["kernel"].shape == (4, 10)
    logits, _ = model.apply(params, {}, jnp.ones((2, 40, 1)), train=False)
    assert logits.shape == (2, 10)


def test_skip_changes_the_function():
    x = jax.random.normal(jax.random.key(3), (2, 8, 8, 1))
    outs = []
    for skip in (False, True):
        model, params, state = build_model(
            model_config(depth=3, width=4, skip=skip), (8, 8, 1), 10, jax.random.key(0)
        )
        outs.append(model.apply(params, state, x, train=False)[0])
    assert not np.allclose(outs[0], outs[1])


def test_batchnorm_mask_ignores_padding():
    cfg = model_config(depth=2, width=4, norm="batch")
    model, params, state = build_model(cfg, (8, 8, 1), 10, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (6, 8, 8, 1))
    real = jnp.array([True, True, True, True, False, False])
    garbage = x.at[4:].set(1e3)
    logits_masked, state_masked = model.apply(params, state, garbage, train=True, mask=real)
    logits_real, state_real = model.apply(params, state, x[:4], train=True)
    np.testing.assert_allclose(logits_masked[:4], logits_real, atol=1e-4, rtol=1e-4)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5),
        state_masked,
        state_real,
    )


def test_group_norm_with_fixed_channels_per_group():
    """``norm_group_size`` fixes channels per group at every width; the default
    ``gcd(norm_groups, width)`` is one channel per group (InstanceNorm) at widths up to 8."""
    from flax import nnx

    from fedjax_deep.models.layers import make_norm

    rngs = nnx.Rngs(0)
    assert make_norm("group", 8, groups=8, rngs=rngs).num_groups == 8  # InstanceNorm
    assert make_norm("group", 8, group_size=4, rngs=rngs).num_groups == 2
    assert make_norm("group", 32, group_size=4, rngs=rngs).num_groups == 8
    with pytest.raises(ValueError, match="norm_group_size=3 does not divide a layer of 8"):
        make_norm("group", 8, group_size=3, rngs=rngs)
    # The model normalizes each group of 4 channels together: a per-channel offset within a
    # group changes the output only through the group's shared statistics.
    x = jax.random.normal(jax.random.key(3), (2, 40, 1))
    outs = {}
    for size in (0, 4):
        model, params, state = build_model(
            model_config(depth=2, width=8, kernel_size=5, norm_group_size=size),
            (40, 1), 10, jax.random.key(0),
        )  # fmt: skip
        outs[size] = model.apply(params, state, x, train=False)[0]
    assert not np.allclose(outs[0], outs[4])


@pytest.mark.parametrize("before_relu", [False, True])
def test_skip_adds_the_input_after_or_before_the_relu(before_relu):
    from flax import nnx

    from fedjax_deep.models.plain import PlainCNN

    module = PlainCNN((12, 1), 10, depth=2, width=4, kernel_size=3, norm="none", skip=True,
                      skip_before_relu=before_relu, rngs=nnx.Rngs(0))  # fmt: skip
    x = jax.random.normal(jax.random.key(1), (3, 12, 1))
    reps = []
    module(x, train=False, representations=reps)
    x0, x1 = reps[0][1], reps[1][1]
    y = module.conv_1(x0)  # norm "none": the conv's output, with its bias
    want = jax.nn.relu(x0 + y) if before_relu else x0 + jax.nn.relu(y)
    np.testing.assert_allclose(x1, want, rtol=1e-6, atol=1e-6)
    assert np.allclose(x0, jax.nn.relu(module.conv_0(x)), atol=1e-6)  # no skip into the stem
