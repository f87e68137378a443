"""ResNet-18/34 (basic blocks) and 50/101/152 (bottleneck blocks), as a depth table.

torchvision's layout (v1.5: a bottleneck's stride sits on its 3x3 convolution; 1x1 projection
shortcuts where the shape changes) with independent knobs:

- stem: ``stem_kernel`` / ``stem_stride`` / ``stem_pool`` (3x3 max pool, stride 2): 7/2/True is the
  ImageNet stem, 3/1/False the CIFAR stem, anything between is a config;
- ``kernel_size``: the blocks' spatial kernel (3 in the paper's ResNets);
- ``width_mult``: scales every stage's channels (0.25 ... 4; Wide-ResNet-style widening);
- ``norm``: batch, group, layer or none (then convolutions get biases).

Module names read ``stem``, ``stage{s}_block{b}/conv{i}``, ``.../shortcut``, ``head``.
"""

from __future__ import annotations

import jax
from flax import nnx

from fedjax_deep.models.layers import Conv, adaptive_avg_pool, apply_norm, keep, make_norm, max_pool

# depth -> (block kind, blocks per stage)
RESNET_TABLE: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
STAGE_CHANNELS = (64, 128, 256, 512)
EXPANSION = {"basic": 1, "bottleneck": 4}


def _channels(c: int, width_mult: float) -> int:
    return int(round(c * width_mult))


class Block(nnx.Module):
    """A basic (two kxk convs) or bottleneck (1x1, kxk, 1x1 x4) residual block."""

    def __init__(self, kind, cin, planes, stride, *, rank, kernel_size, norm, norm_groups,
                 norm_group_size=0,
                 conv_impl, rngs):  # fmt: skip
        self.kind = kind
        cout = planes * EXPANSION[kind]
        bias = norm == "none"
        k = (kernel_size,) * rank
        one = (1,) * rank
        if kind == "basic":
            specs = [(cin, planes, k, stride), (planes, planes, k, 1)]
        else:
            specs = [(cin, planes, one, 1), (planes, planes, k, stride), (planes, cout, one, 1)]
        self.num_convs = len(specs)
        for i, (a, b, kern, s) in enumerate(specs):
            setattr(self, f"conv{i + 1}", Conv(a, b, kern, strides=s, use_bias=bias, impl=conv_impl,
                                               rngs=rngs))  # fmt: skip
            setattr(
                self,
                f"norm{i + 1}",
                make_norm(norm, b, groups=norm_groups, group_size=norm_group_size, rngs=rngs),
            )
        self.has_shortcut = stride != 1 or cin != cout
        if self.has_shortcut:
            self.shortcut = Conv(cin, cout, one, strides=stride, use_bias=bias, impl=conv_impl,
                                 rngs=rngs)  # fmt: skip
            self.shortcut_norm = make_norm(
                norm, cout, groups=norm_groups, group_size=norm_group_size, rngs=rngs
            )

    def __call__(self, x, *, train, mask):
        y = x
        for i in range(1, self.num_convs + 1):
            y = getattr(self, f"conv{i}")(y)
            y = apply_norm(getattr(self, f"norm{i}"), y, train=train, mask=mask)
            if i < self.num_convs:
                y = jax.nn.relu(y)
        if self.has_shortcut:
            x = apply_norm(self.shortcut_norm, self.shortcut(x), train=train, mask=mask)
        return jax.nn.relu(x + y)

    def layer_names(self, prefix: str) -> list[str]:
        names = [f"{prefix}/conv{i}" for i in range(1, self.num_convs + 1)]
        return names + ([f"{prefix}/shortcut"] if self.has_shortcut else [])


class ResNet(nnx.Module):
    """ResNet of a table depth with the knobs of the module docstring."""

    def __init__(
        self,
        input_shape,
        num_classes: int,
        *,
        depth: int,
        width_mult: float = 1.0,
        kernel_size: int = 3,
        stem_kernel: int = 3,
        stem_stride: int = 1,
        stem_pool: bool = False,
        norm: str = "batch",
        norm_groups: int = 32,
        norm_group_size: int = 0,
        conv_impl: str = "im2col",
        rngs: nnx.Rngs,
    ):
        rank = len(input_shape) - 1
        kind, blocks = RESNET_TABLE[depth]
        stem_out = _channels(STAGE_CHANNELS[0], width_mult)
        self.stem = Conv(input_shape[-1], stem_out, (stem_kernel,) * rank, strides=stem_stride,
                         use_bias=norm == "none", impl=conv_impl, rngs=rngs)  # fmt: skip
        self.stem_norm = make_norm(
            norm, stem_out, groups=norm_groups, group_size=norm_group_size, rngs=rngs
        )
        self.stem_pool = stem_pool
        self.block_names = []
        cin = stem_out
        for s, (planes, count) in enumerate(zip(STAGE_CHANNELS, blocks, strict=True)):
            planes = _channels(planes, width_mult)
            for b in range(count):
                stride = 2 if (s > 0 and b == 0) else 1
                name = f"stage{s + 1}_block{b}"
                block = Block(kind, cin, planes, stride, rank=rank, kernel_size=kernel_size,
                              norm=norm, norm_groups=norm_groups,
                              norm_group_size=norm_group_size, conv_impl=conv_impl, rngs=rngs)  # fmt: skip
                setattr(self, name, block)
                self.block_names.append(name)
                cin = planes * EXPANSION[kind]
        self.head = nnx.Linear(cin, num_classes, rngs=rngs)

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
        x = jax.nn.relu(apply_norm(self.stem_norm, self.stem(x), train=train, mask=mask))
        if self.stem_pool:
            x = max_pool(x, 3, 2, padding=1)
        keep(representations, "stem", x)
        for name in self.block_names:
            x = getattr(self, name)(x, train=train, mask=mask)
            keep(representations, name, x)
        x = adaptive_avg_pool(x, 1).reshape(x.shape[0], -1)
        logits = self.head(x)
        keep(representations, "head", logits)
        return logits

    def layer_names(self) -> tuple[str, ...]:
        names = ["stem"]
        for name in self.block_names:
            names += getattr(self, name).layer_names(name)
        return tuple(names + ["head"])


def resnet_receptive_path(depth, kernel_size, stem_kernel, stem_stride, stem_pool):
    """(kernel, stride, dilation) along the main path up to the last convolution."""
    kind, blocks = RESNET_TABLE[depth]
    path = [(stem_kernel, stem_stride, 1)]
    if stem_pool:
        path.append((3, 2, 1))
    for s, count in enumerate(blocks):
        for b in range(count):
            stride = 2 if (s > 0 and b == 0) else 1
            if kind == "basic":
                path += [(kernel_size, stride, 1), (kernel_size, 1, 1)]
            else:
                path += [(1, 1, 1), (kernel_size, stride, 1), (1, 1, 1)]
    return path
