"""The plain CNN of configurable depth and width: the reviewers' controlled depth sweep.

``depth`` convolutions of one kernel size at one width (conv -> norm -> ReLU), optional identity skips
around every layer whose input and output shapes match, and a linear head on the flattened feature
map (``head='flatten'``, the default: a shallow net is not handicapped by a small receptive field,
so depth is not confounded with it) or on globally average-pooled features (``head='avgpool'``).
It works on inputs of any spatial rank (8x8 digits images, length-40 MNIST-1D signals), because the
convolution is :func:`fedjax_deep.models.layers.conv_im2col`.

Layer names are strings (``conv_0`` ... ``conv_{depth-1}``, ``head``) so parameter paths read well in
divergence metrics and checkpoints. The forward pass is :class:`~fedjax_deep.models.layers.Classifier`
running each model's plan.
"""

from __future__ import annotations

import math

from flax import nnx

from fedjax_deep.models.layers import Classifier, he_normal, make_conv_norm, make_norm

HEADS = ("flatten", "avgpool")


class PlainCNN(Classifier):
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
        widths = tuple(widths) or (width,) * depth
        strides = tuple(strides) or (stem_stride,) + (1,) * (depth - 1)
        if len(widths) != depth or len(strides) != depth:
            raise ValueError(f"widths={widths}, strides={strides}: give one per layer ({depth})")
        if head not in HEADS:
            raise ValueError(f"head={head!r}: use one of {HEADS}")
        conv_norm = make_conv_norm(len(input_shape) - 1, norm, norm_groups=norm_groups,
                                   norm_group_size=norm_group_size, conv_impl=conv_impl, rngs=rngs)  # fmt: skip
        skip_mode = ("before" if skip_before_relu else "after") if skip else ""
        plan, in_features, spatial = [], input_shape[-1], list(input_shape[:-1])
        for i, (w, s) in enumerate(zip(widths, strides, strict=True)):
            k = stem_kernel if (i == 0 and stem_kernel) else kernel_size
            conv, norm_layer = conv_norm(in_features, w, k, s)
            setattr(self, f"conv_{i}", conv)
            setattr(self, f"norm_{i}", norm_layer)
            plan.append(("layer", f"conv_{i}", f"norm_{i}", skip_mode))
            spatial = [(n - 1) // s + 1 for n in spatial]  # symmetric (k - 1) // 2 padding
            if i == 0 and stem_pool:
                plan.append(("max_pool", 3, 2, 1))
                spatial = [(n - 1) // 2 + 1 for n in spatial]
            plan.append(("keep", f"conv_{i}"))
            in_features = w
        if head == "avgpool":
            plan.append(("mean",))
        else:
            plan.append(("flatten",))
            in_features *= math.prod(spatial)
        self.plan = tuple(plan)
        self.head = nnx.Linear(in_features, num_classes, rngs=rngs)


class PlainMLP(Classifier):
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
        plan, features = [("flatten",)], math.prod(input_shape)
        for i in range(depth):
            setattr(self, f"fc_{i}", nnx.Linear(features, width, kernel_init=he_normal, rngs=rngs))
            setattr(self, f"norm_{i}", make_norm(norm, width, groups=norm_groups,
                                                 group_size=norm_group_size, rngs=rngs))  # fmt: skip
            plan += [
                ("layer", f"fc_{i}", f"norm_{i}", "after" if skip else ""),
                ("keep", f"fc_{i}"),
            ]
            features = width
        self.plan = tuple(plan)
        self.head = nnx.Linear(features, num_classes, rngs=rngs)
