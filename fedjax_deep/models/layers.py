"""Layers shared by every model family: the client-batched convolution and the normalization choice.

The convolution lives here and only here, so that every model (the plain CNN now, the VGG/ResNet zoo
later) gets the same formulation and a faster one is a change in one place.

Why im2col: under ``vmap`` over client kernels XLA lowers ``lax.conv_general_dilated`` to a grouped
convolution, which XLA's CPU backend runs ~10x slower than separate convolutions, and a native
convolution inside ``lax.scan`` ran ~20x slower again (../shared/PERF.md). Written as shifted slices
(the patches) concatenated on the feature axis and one matrix product, the convolution vmaps into a
batched matrix product and has neither cliff. It costs about kernel-area times the activation memory.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

NORMS = ("none", "batch", "group", "layer")
CONV_IMPLS = ("im2col", "native")


def _pad_amounts(
    padding: str | Sequence[tuple[int, int]],
    in_size: Sequence[int],
    window: Sequence[int],
    strides: Sequence[int],
) -> list[tuple[int, int]]:
    """Explicit (low, high) padding per spatial dim, with XLA's SAME/VALID semantics."""
    if not isinstance(padding, str):
        return [tuple(p) for p in padding]
    if padding == "VALID":
        return [(0, 0)] * len(in_size)
    if padding != "SAME":
        raise ValueError(f"padding={padding!r}: use 'SAME', 'VALID' or a list of (low, high) pairs")
    pads = []
    for n, w, s in zip(in_size, window, strides, strict=False):
        out = -(-n // s)
        total = max((out - 1) * s + w - n, 0)
        pads.append((total // 2, total - total // 2))
    return pads


def _patches(x, window, strides, dilation, pads):
    """``[N, *spatial, C]`` -> ``[N, *out, prod(window) * C]``: the shifted slices, concatenated."""
    x = jnp.pad(x, [(0, 0), *pads, (0, 0)])
    eff_window = [(w - 1) * d + 1 for w, d in zip(window, dilation, strict=True)]
    out_size = [
        (n - ew) // s + 1 for n, ew, s in zip(x.shape[1:-1], eff_window, strides, strict=True)
    ]
    patches = []
    for offset in _offsets(window):
        start = [o * d for o, d in zip(offset, dilation, strict=True)]
        limit = [st + (o - 1) * s + 1 for st, o, s in zip(start, out_size, strides, strict=True)]
        patches.append(
            jax.lax.slice(x, (0, *start, 0), (x.shape[0], *limit, x.shape[-1]), (1, *strides, 1))
        )
    return patches[0] if len(patches) == 1 else jnp.concatenate(patches, axis=-1)


def _matmul_conv(x, kernel, strides, dilation, pads):
    cols = _patches(x, kernel.shape[:-2], strides, dilation, pads)
    return jnp.dot(cols, kernel.reshape(-1, kernel.shape[-1]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_stride1(x, kernel, dilation, pads):
    return _matmul_conv(x, kernel, (1,) * (x.ndim - 2), dilation, pads)


def _conv_stride1_fwd(x, kernel, dilation, pads):
    # Keep x, not the patches: the backward pass rebuilds them (cheap slices) and the residual is
    # kernel-area times smaller, which matters on accelerators.
    return _conv_stride1(x, kernel, dilation, pads), (x, kernel)


def _conv_stride1_bwd(dilation, pads, residuals, dy):
    x, kernel = residuals
    nd = x.ndim - 2
    window = kernel.shape[:nd]
    ones = (1,) * nd
    # Input gradient: the same patch-and-matmul convolution of dy with the spatially flipped,
    # in/out-swapped kernel and the complementary padding. Autodiff of the forward's slices would
    # instead pad and add kernel-area full-size arrays, which measured slower on CPU.
    flipped = jnp.flip(kernel, tuple(range(nd))).swapaxes(-1, -2)
    back_pads = [
        ((w - 1) * d - lo, (w - 1) * d - hi)
        for w, d, (lo, hi) in zip(window, dilation, pads, strict=True)
    ]
    dx = _matmul_conv(dy, flipped, ones, dilation, back_pads)
    cols = _patches(x, window, ones, dilation, pads)
    dkernel = jnp.tensordot(cols, dy, axes=(tuple(range(nd + 1)), tuple(range(nd + 1))))
    return dx, dkernel.reshape(kernel.shape)


_conv_stride1.defvjp(_conv_stride1_fwd, _conv_stride1_bwd)


def conv_im2col(
    x: jax.Array,
    kernel: jax.Array,
    strides: Sequence[int] | int = 1,
    padding: str | Sequence[tuple[int, int]] = "SAME",
    dilation: Sequence[int] | int = 1,
) -> jax.Array:
    """N-d convolution as patches plus one matrix product (same result as ``lax.conv_general_dilated``).

    Stride-1 convolutions carry a custom VJP whose input gradient is itself a patch-and-matmul
    convolution (``scripts/bench_clients.py`` measured autodiff's pad-and-add slower on CPU).

    Args:
      x: ``[N, *spatial, C_in]`` (channels last).
      kernel: ``[*window, C_in, C_out]``.
      strides, dilation: an int or one per spatial dim (dilation is of the kernel, "atrous").
      padding: ``'SAME'``, ``'VALID'`` or explicit ``(low, high)`` pairs per spatial dim.

    Returns:
      ``[N, *out_spatial, C_out]``.
    """
    nd = x.ndim - 2
    window = kernel.shape[:nd]
    strides = (strides,) * nd if isinstance(strides, int) else tuple(strides)
    dilation = (dilation,) * nd if isinstance(dilation, int) else tuple(dilation)
    eff_window = [(w - 1) * d + 1 for w, d in zip(window, dilation, strict=True)]
    pads = tuple(tuple(p) for p in _pad_amounts(padding, x.shape[1:-1], eff_window, strides))
    if all(s == 1 for s in strides) and all(
        0 <= lo <= ew - 1 and 0 <= hi <= ew - 1
        for (lo, hi), ew in zip(pads, eff_window, strict=True)
    ):
        return _conv_stride1(x, kernel, dilation, pads)
    return _matmul_conv(x, kernel, strides, dilation, pads)


def conv_native(
    x: jax.Array,
    kernel: jax.Array,
    strides: Sequence[int] | int = 1,
    padding: str | Sequence[tuple[int, int]] = "SAME",
    dilation: Sequence[int] | int = 1,
) -> jax.Array:
    """:func:`conv_im2col`'s signature on ``lax.conv_general_dilated`` (XLA's own convolution).

    Fast at top level; slow under ``vmap`` over kernels and inside loops on CPU (see module doc).
    """
    nd = x.ndim - 2
    strides = (strides,) * nd if isinstance(strides, int) else tuple(strides)
    dilation = (dilation,) * nd if isinstance(dilation, int) else tuple(dilation)
    spatial = "DHW"[-nd:] if nd <= 3 else None
    spec = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
    return jax.lax.conv_general_dilated(
        x, kernel, strides, padding, rhs_dilation=dilation, dimension_numbers=spec
    )


def _offsets(window: Sequence[int]) -> list[tuple[int, ...]]:
    """Kernel offsets in row-major order, matching ``kernel.reshape(prod(window) * C_in, C_out)``."""
    offsets = [()]
    for w in window:
        offsets = [o + (i,) for o in offsets for i in range(w)]
    return offsets


class Conv(nnx.Module):
    """Channels-last N-d convolution; ``impl='im2col'`` (default) is fast under vmap and in scan.

    ``padding=None`` (default) pads ``(k - 1) // 2 * dilation`` on both sides, as PyTorch's
    ``padding=k // 2`` does for odd kernels."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: Sequence[int],
        *,
        strides: Sequence[int] | int = 1,
        padding: str | Sequence[tuple[int, int]] | None = None,
        dilation: Sequence[int] | int = 1,
        use_bias: bool = True,
        impl: str = "im2col",
        rngs: nnx.Rngs,
    ):
        if impl not in CONV_IMPLS:
            raise ValueError(f"conv impl={impl!r}: use one of {CONV_IMPLS}")
        kernel_size = tuple(kernel_size)
        if padding is None:
            # PyTorch's symmetric (k - 1) // 2: equals SAME for odd kernels at stride 1, and keeps
            # stride-2 layers aligned as in the reference ResNets (SAME would pad (0, 1)).
            dil = (dilation,) * len(kernel_size) if isinstance(dilation, int) else dilation
            padding = tuple(
                ((k - 1) // 2 * d, (k - 1) // 2 * d) for k, d in zip(kernel_size, dil, strict=True)
            )
        # He-normal on fan-in: keeps activations' scale through deep ReLU stacks.
        init = jax.nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")
        self.kernel = nnx.Param(init(rngs.params(), (*kernel_size, in_features, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
        self.strides = strides
        self.padding = padding
        self.dilation = dilation
        self.impl = impl

    def __call__(self, x: jax.Array) -> jax.Array:
        fn = conv_im2col if self.impl == "im2col" else conv_native
        y = fn(x, self.kernel[...], self.strides, self.padding, self.dilation)
        if self.bias is not None:
            y = y + self.bias[...].reshape((1,) * (y.ndim - 1) + (-1,))
        return y


def make_norm(
    kind: str, features: int, *, groups: int = 8, group_size: int = 0, rngs: nnx.Rngs
) -> nnx.Module | None:
    """The normalization layer named ``kind``: ``'none'`` (None), ``'batch'``, ``'group'`` or
    ``'layer'``.

    BatchNorm statistics are ``nnx.BatchStat`` variables: in the functional round they are per-client
    state on the client axis and are never synchronised across clients (no ``axis_name``).
    GroupNorm uses ``gcd(groups, features)`` groups so that any width is valid (at widths up to
    ``groups`` that is one channel per group: InstanceNorm); with ``group_size > 0`` it uses
    ``features // group_size`` groups instead, the same number of channels per group at every width
    (``features`` must then be a multiple of ``group_size``). LayerNorm normalizes
    each position over its channels (the ConvNeXt form for feature maps; the usual one for an MLP).
    """
    if kind not in NORMS:
        raise ValueError(f"norm={kind!r}: use one of {NORMS}")
    if kind == "batch":
        # momentum 0.9 (PyTorch's 0.1): running statistics must settle within a few local epochs.
        return nnx.BatchNorm(features, momentum=0.9, rngs=rngs)
    if kind == "group":
        if group_size:
            if features % group_size:
                raise ValueError(f"model.norm_group_size={group_size} does not divide a layer of "
                                 f"{features} channels: use a divisor of every layer's width")  # fmt: skip
            return nnx.GroupNorm(features, num_groups=features // group_size, rngs=rngs)
        return nnx.GroupNorm(features, num_groups=math.gcd(groups, features), rngs=rngs)
    if kind == "layer":
        return nnx.LayerNorm(features, rngs=rngs)
    return None


def apply_norm(
    layer: nnx.Module | None, x: jax.Array, *, train: bool, mask: jax.Array | None = None
) -> jax.Array:
    """Applies a :func:`make_norm` layer; ``mask`` (``[N]``, True = real example) keeps padding out of
    BatchNorm's batch statistics."""
    if isinstance(layer, nnx.BatchNorm):
        bn_mask = None
        if mask is not None:
            bn_mask = jnp.broadcast_to(mask.reshape((-1,) + (1,) * (x.ndim - 1)), x.shape)
        return layer(x, use_running_average=not train, mask=bn_mask)
    if layer is None:
        return x
    return layer(x)


def _pool_slices(x, window, strides, pads, fill):
    x = jnp.pad(x, [(0, 0), *pads, (0, 0)], constant_values=fill)
    out_size = [(n - w) // s + 1 for n, w, s in zip(x.shape[1:-1], window, strides, strict=True)]
    for offset in _offsets(window):
        limit = [o + (n - 1) * s + 1 for o, n, s in zip(offset, out_size, strides, strict=True)]
        yield jax.lax.slice(x, (0, *offset, 0), (x.shape[0], *limit, x.shape[-1]), (1, *strides, 1))


def max_pool(x: jax.Array, window: int, stride: int, padding: int = 0) -> jax.Array:
    """Max pooling over every spatial dim as an elementwise max of shifted slices (like the
    convolution: no ``reduce_window``/``select_and_scatter``, which are slow in CPU loops).

    ``x``: ``[N, *spatial, C]``; ``padding`` pixels of -inf on each side.
    """
    nd = x.ndim - 2
    pads = [(padding, padding)] * nd
    out = None
    for piece in _pool_slices(x, (window,) * nd, (stride,) * nd, pads, -jnp.inf):
        out = piece if out is None else jnp.maximum(out, piece)
    return out


def adaptive_avg_pool(x: jax.Array, size: int) -> jax.Array:
    """Averages ``[N, *spatial, C]`` down to ``size`` along every spatial dim (each spatial size must
    be a multiple of ``size``; 1 is global average pooling)."""
    nd = x.ndim - 2
    spatial = x.shape[1:-1]
    if any(n % size for n in spatial):
        raise ValueError(f"adaptive_avg_pool: spatial size {spatial} is not a multiple of {size}")
    shape = [x.shape[0]]
    for n in spatial:
        shape += [size, n // size]
    x = x.reshape(*shape, x.shape[-1])
    return jnp.mean(x, axis=tuple(2 + 2 * i for i in range(nd)))


def keep(representations: list | None, name: str, x: jax.Array) -> None:
    """A model's capture hook: appends ``(name, x)`` to ``representations`` when it is a list
    (``FunctionalModel.representations`` passes one; training passes None and keeps nothing)."""
    if representations is not None:
        representations.append((name, x))
