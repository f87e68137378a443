"""Layers shared by every model family: the client-batched convolution, the normalization choice and
the forward pass itself (:class:`Classifier`: a family's plan of named steps, run by one interpreter).

The convolution lives here and only here, so that every model (the plain CNN, the VGG/ResNet zoo)
gets the same formulation and a faster one is a change in one place. Likewise the conv -> norm ->
ReLU (+ skip) layer, the representation capture and the head are written once, in
:meth:`Classifier.__call__`; a family only builds its sub-modules and lists its plan.

Why im2col: under ``vmap`` over client kernels XLA lowers ``lax.conv_general_dilated`` to a grouped
convolution, which XLA's CPU backend runs ~10x slower than separate convolutions, and a native
convolution inside ``lax.scan`` ran ~20x slower again (../shared/PERF.md). Written as shifted slices
(the patches) concatenated on the feature axis and one matrix product, the convolution vmaps into a
batched matrix product and has neither cliff. It costs about kernel-area times the activation memory.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

NORMS = ("none", "batch", "group", "layer")
CONV_IMPLS = ("im2col", "native")
# He-normal on fan-in, every family's kernel init: keeps activations' scale through deep ReLU stacks.
he_normal = jax.nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")


def _per_dim(value: Sequence[int] | int, nd: int) -> tuple[int, ...]:
    """An int (the same along every spatial dim) or one value per dim, as a tuple of ``nd``."""
    return (value,) * nd if isinstance(value, int) else tuple(value)


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
    strides, dilation = _per_dim(strides, nd), _per_dim(dilation, nd)
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
    strides, dilation = _per_dim(strides, nd), _per_dim(dilation, nd)
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
            dil = _per_dim(dilation, len(kernel_size))
            padding = tuple(
                ((k - 1) // 2 * d, (k - 1) // 2 * d) for k, d in zip(kernel_size, dil, strict=True)
            )
        self.kernel = nnx.Param(he_normal(rngs.params(), (*kernel_size, in_features, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
        self.strides = strides
        self.padding = padding
        self.dilation = dilation
        self.impl = impl

    def receptive_step(self) -> tuple[int, int, int]:
        """``(kernel, stride, dilation)`` along the first spatial dim, a term of ``receptive_field``."""
        return self.kernel.shape[0], _per_dim(self.strides, 1)[0], _per_dim(self.dilation, 1)[0]

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


def make_conv_norm(
    rank: int,
    norm: str,
    *,
    norm_groups: int = 8,
    norm_group_size: int = 0,
    conv_impl: str = "im2col",
    rngs: nnx.Rngs,
) -> Callable[..., tuple[Conv, nnx.Module | None]]:
    """A family's convolution factory: ``conv_norm(in_features, out_features, kernel_size, strides=1)``
    returns ``(Conv, norm layer or None)``.

    The window is ``kernel_size`` along all ``rank`` spatial dims; the convolution has a bias only
    when ``norm == 'none'`` (a norm's shift takes its place); its kernel is drawn from ``rngs``
    before the norm's parameters, so a family's parameters follow its construction order.
    """

    def conv_norm(in_features: int, out_features: int, kernel_size: int, strides: int = 1):
        window = (kernel_size,) * rank
        conv = Conv(in_features, out_features, window, strides=strides, use_bias=norm == "none",
                    impl=conv_impl, rngs=rngs)  # fmt: skip
        norm_layer = make_norm(norm, out_features, groups=norm_groups, group_size=norm_group_size,
                               rngs=rngs)  # fmt: skip
        return conv, norm_layer

    return conv_norm


class Classifier(nnx.Module):
    """A model whose forward pass is data: ``self.plan``, a tuple of steps, then ``self.head``.

    Steps are tuples ``(op, *args)``:

    - ``("layer", name, norm_name, skip)``: ``self.<name>`` (a :class:`Conv` or ``nnx.Linear``),
      then ``self.<norm_name>`` (``""``: none), then ReLU. Where the output has the input's shape,
      ``skip="after"`` adds the input after the ReLU, ``x + relu(y)``, and ``"before"`` before it,
      ``relu(x + y)`` (ResNet v1's order); ``""`` never adds it.
    - ``("block", name)``: ``self.<name>(x, train=, mask=)``, a module with its own
      ``layer_names(prefix)`` and ``receptive_path()`` (a ResNet block).
    - ``("max_pool", window, stride, padding)``.
    - ``("mean",)``: global average over the spatial dims, ``[N, *spatial, C] -> [N, C]``.
    - ``("avg_pool", size)``: :func:`adaptive_avg_pool` to ``size``, flattened.
    - ``("flatten",)``: ``[N, ...] -> [N, prod(...)]``.
    - ``("keep", name)``: records the activation as representation ``name``.

    A family subclasses it only to build its sub-modules and its plan: the forward pass, the
    representation capture, the kernel-owning layer names and the receptive path all read the one
    plan, so they cannot drift apart. (A base class, not a function, because NNX calls the module.)
    """

    plan: tuple[tuple, ...]  # set by the family's __init__

    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool,
        mask: jax.Array | None = None,
        representations: list | None = None,
    ) -> jax.Array:
        """Logits ``[N, num_classes]`` of ``x: [N, *input_shape]``; ``representations`` (a list), if
        given, receives ``(name, activation)`` at every ``keep`` step and ``("head", logits)``
        (see ``FunctionalModel.representations``)."""
        for op, *args in self.plan:
            if op == "layer":
                name, norm, skip = args
                norm_layer = getattr(self, norm) if norm else None
                y = apply_norm(norm_layer, getattr(self, name)(x), train=train, mask=mask)
                residual = bool(skip) and y.shape == x.shape
                if residual and skip == "before":
                    x = jax.nn.relu(x + y)
                else:
                    y = jax.nn.relu(y)
                    x = x + y if residual else y
            elif op == "block":
                x = getattr(self, args[0])(x, train=train, mask=mask)
            elif op == "max_pool":
                x = max_pool(x, *args)
            elif op == "mean":
                x = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))
            elif op == "avg_pool":
                x = adaptive_avg_pool(x, *args).reshape(x.shape[0], -1)
            elif op == "flatten":
                x = x.reshape(x.shape[0], -1)
            elif op == "keep":
                keep(representations, args[0], x)
            else:
                raise ValueError(f"plan step {(op, *args)!r}: unknown op {op!r}")
        logits = self.head(x)
        keep(representations, "head", logits)
        return logits

    def layer_names(self) -> tuple[str, ...]:
        """Kernel-owning sub-modules in forward order (a block lists its own), ending in ``head``:
        ``FunctionalModel.layers``; a name's kernel is at the parameter path ``<name>/kernel``."""
        names = []
        for op, *args in self.plan:
            if op == "layer":
                names.append(args[0])
            elif op == "block":
                names += getattr(self, args[0]).layer_names(args[0])
        return (*names, "head")

    def receptive_path(self) -> tuple[tuple[int, int, int], ...] | None:
        """``(kernel, stride, dilation)`` of every convolution and pool on the main path up to the
        last convolution; None for a model without convolutions (an MLP)."""
        path, end = [], 0
        for op, *args in self.plan:
            if op == "max_pool":
                window, stride, _ = args
                path.append((window, stride, 1))
            elif op == "block":
                path += getattr(self, args[0]).receptive_path()
                end = len(path)
            elif op == "layer" and isinstance(layer := getattr(self, args[0]), Conv):
                path.append(layer.receptive_step())
                end = len(path)
        return tuple(path[:end]) or None
