"""The plain CNN of configurable depth and width: the reviewers' controlled depth sweep.

``depth`` convolutions of one kernel size at one width (conv -> norm -> ReLU), optional identity skips
around every layer whose input and output shapes match, and a linear head on the flattened feature
map (``head='flatten'``, the default: a shallow net is not handicapped by a small receptive field,
so depth is not confounded with it) or on globally average-pooled features (``head='avgpool'``).
It works on inputs of any spatial rank (8x8 digits images, length-40 MNIST-1D signals), because the
convolution is :func:`fedjax_deep.models.layers.conv_im2col`.

Layer names are strings (``conv_0`` ... ``conv_{depth-1}``, ``head``) so parameter paths read well in
divergence metrics and checkpoints.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from fedjax_deep.models.layers import Conv, apply_norm, keep, make_norm, max_pool

HEADS = ("flatten", "avgpool")


class PlainCNN(nnx.Module):
    """``depth`` x (conv -> norm -> ReLU [+ skip]) -> flatten or average pool -> linear.

    Args:
      input_shape: one example's shape, channels last, e.g. ``(8, 8, 1)`` or ``(40, 1)``.
      num_classes: output logits.
      depth: number of convolution layers (>= 1).
      width: channels of every convolution (unless ``widths`` is given).
      widths: optional per-layer channels (length ``depth``), e.g. ``(16, 32, 64, 64)``.
      strides: optional per-layer strides (length ``depth``); default 1 everywhere.
      stem_kernel, stem_stride, stem_pool: the first layer's kernel size (0: ``kernel_size``),
        stride (when ``strides`` is not given) and an optional 3x3 stride-2 max pool after it.
      kernel_size: the same odd size along every spatial dim.
      norm: ``'none'``, ``'batch'`` or ``'group'``.
      skip: add the layer input to its output where shapes match (every layer but the first).
      skip_before_relu: with ``skip``, add the input before the ReLU, ``relu(x + norm(conv(x)))``
        (ResNet v1's order), instead of after it, ``x + relu(norm(conv(x)))`` (the default, whose
        sums of non-negative outputs grow with depth).
      head: ``'flatten'`` or ``'avgpool'``: what the linear head sees.
      conv_impl: ``'im2col'`` (default; fast under vmap and in loops) or ``'native'``
        (``lax.conv_general_dilated``; used by baselines).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        depth: int,
        width: int,
        kernel_size: int = 3,
        norm: str = "group",
        norm_groups: int = 8,
        norm_group_size: int = 0,
        skip: bool = False,
        skip_before_relu: bool = False,
        head: str = "flatten",
        widths: tuple[int, ...] = (),
        strides: tuple[int, ...] = (),
        conv_impl: str = "im2col",
        stem_kernel: int = 0,
        stem_stride: int = 1,
        stem_pool: bool = False,
        rngs: nnx.Rngs,
    ):
        spatial_rank = len(input_shape) - 1
        widths = tuple(widths) or (width,) * depth
        strides = tuple(strides) or (stem_stride,) + (1,) * (depth - 1)
        if len(widths) != depth or len(strides) != depth:
            raise ValueError(f"widths={widths}, strides={strides}: give one per layer ({depth})")
        self.depth = depth
        self.skip = skip
        self.skip_before_relu = skip_before_relu
        in_features = input_shape[-1]
        spatial = list(input_shape[:-1])
        self.stem_pool = stem_pool
        for i, (w, s) in enumerate(zip(widths, strides, strict=True)):
            k = stem_kernel if (i == 0 and stem_kernel) else kernel_size
            setattr(
                self,
                f"conv_{i}",
                Conv(
                    in_features,
                    w,
                    (k,) * spatial_rank,
                    strides=s,
                    use_bias=norm == "none",
                    impl=conv_impl,
                    rngs=rngs,
                ),
            )
            setattr(
                self,
                f"norm_{i}",
                make_norm(norm, w, groups=norm_groups, group_size=norm_group_size, rngs=rngs),
            )
            in_features = w
            spatial = [(n - 1) // s + 1 for n in spatial]  # symmetric (k - 1) // 2 padding
            if i == 0 and stem_pool:
                spatial = [(n - 1) // 2 + 1 for n in spatial]
        if head not in HEADS:
            raise ValueError(f"head={head!r}: use one of {HEADS}")
        self.pool = head == "avgpool"
        head_in = in_features if self.pool else in_features * math.prod(spatial)
        self.head = nnx.Linear(head_in, num_classes, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool,
        mask: jax.Array | None = None,
        representations: list | None = None,
    ) -> jax.Array:
        """Logits; ``representations`` (a list), if given, receives ``(name, activation)``
        after every layer (see ``FunctionalModel.representations``)."""
        for i in range(self.depth):
            y = getattr(self, f"conv_{i}")(x)
            y = apply_norm(getattr(self, f"norm_{i}"), y, train=train, mask=mask)
            residual = self.skip and y.shape == x.shape
            if residual and self.skip_before_relu:
                x = jax.nn.relu(x + y)
            else:
                y = jax.nn.relu(y)
                x = x + y if residual else y
            if i == 0 and self.stem_pool:
                x = max_pool(x, 3, 2, padding=1)
            keep(representations, f"conv_{i}", x)
        if self.pool:
            x = jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))
        else:
            x = x.reshape(x.shape[0], -1)
        logits = self.head(x)
        keep(representations, "head", logits)
        return logits


class PlainMLP(nnx.Module):
    """``depth`` x (linear -> norm -> ReLU [+ skip]) -> linear, on the flattened input.

    The MLP control of the depth sweep: no convolution, no spatial structure. Layer names are
    ``fc_0`` ... ``fc_{depth-1}``, ``head``.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        depth: int,
        width: int,
        norm: str = "none",
        norm_groups: int = 8,
        norm_group_size: int = 0,
        skip: bool = False,
        rngs: nnx.Rngs,
    ):
        self.depth = depth
        self.skip = skip
        features = math.prod(input_shape)
        init = jax.nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")
        for i in range(depth):
            setattr(self, f"fc_{i}", nnx.Linear(features, width, kernel_init=init, rngs=rngs))
            setattr(
                self,
                f"norm_{i}",
                make_norm(norm, width, groups=norm_groups, group_size=norm_group_size, rngs=rngs),
            )
            features = width
        self.head = nnx.Linear(features, num_classes, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool,
        mask: jax.Array | None = None,
        representations: list | None = None,
    ) -> jax.Array:
        """Logits; ``representations`` (a list), if given, receives ``(name, activation)``
        after every layer (see ``FunctionalModel.representations``)."""
        x = x.reshape(x.shape[0], -1)
        for i in range(self.depth):
            y = getattr(self, f"fc_{i}")(x)
            y = jax.nn.relu(apply_norm(getattr(self, f"norm_{i}"), y, train=train, mask=mask))
            x = x + y if self.skip and y.shape == x.shape else y
            keep(representations, f"fc_{i}", x)
        logits = self.head(x)
        keep(representations, "head", logits)
        return logits
