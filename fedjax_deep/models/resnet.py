"""ResNet-18/34 (basic blocks) and 50/101/152 (bottleneck blocks), as a depth table.

torchvision's layout (v1.5: a bottleneck's stride sits on its 3x3 convolution; 1x1 projection
shortcuts where the shape changes) with independent knobs:

- stem: ``stem_kernel`` / ``stem_stride`` / ``stem_pool`` (3x3 max pool, stride 2): 7/2/True is the
  ImageNet stem, 3/1/False the CIFAR stem, anything between is a config;
- ``kernel_size``: the blocks' spatial kernel (3 in the paper's ResNets);
- ``width_mult``: scales every stage's channels (0.25 ... 4; Wide-ResNet-style widening);
- ``norm``: batch, group, layer or none (then convolutions get biases).

Module names read ``stem``, ``stage{s}_block{b}/conv{i}``, ``.../shortcut``, ``head``. The stem,
the blocks and the head run as a :class:`~fedjax_deep.models.layers.Classifier` plan; a block is
its own module (the residual sum is not a plan step).
"""

from __future__ import annotations

import jax
from flax import nnx

from fedjax_deep.models.layers import Classifier, apply_norm, make_conv_norm

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
    """A basic (two kxk convs) or bottleneck (1x1, kxk, 1x1 x4) residual block.

    ``conv_norm`` is the ResNet's :func:`~fedjax_deep.models.layers.make_conv_norm` factory.
    """

    def __init__(self, kind, cin, planes, stride, *, kernel_size, conv_norm):
        cout = planes * EXPANSION[kind]
        k = kernel_size
        if kind == "basic":
            specs = [(cin, planes, k, stride), (planes, planes, k, 1)]
        else:
            specs = [(cin, planes, 1, 1), (planes, planes, k, stride), (planes, cout, 1, 1)]
        self.num_convs = len(specs)
        for i, spec in enumerate(specs, start=1):
            conv, norm = conv_norm(*spec)
            setattr(self, f"conv{i}", conv)
            setattr(self, f"norm{i}", norm)
        self.has_shortcut = stride != 1 or cin != cout
        if self.has_shortcut:
            self.shortcut, self.shortcut_norm = conv_norm(cin, cout, 1, stride)

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

    def receptive_path(self) -> list[tuple[int, int, int]]:
        """The main path's convolutions (the shortcut is the shorter path)."""
        return [getattr(self, f"conv{i}").receptive_step() for i in range(1, self.num_convs + 1)]


class ResNet(Classifier):
    """ResNet of a table depth with the knobs of the module docstring (``stem_kernel=0``:
    ``kernel_size``)."""

    def __init__(
        self,
        input_shape,
        num_classes: int,
        *,
        depth: int,
        width_mult: float = 1.0,
        kernel_size: int = 3,
        stem_kernel: int = 0,
        stem_stride: int = 1,
        stem_pool: bool = False,
        norm: str = "batch",
        norm_groups: int = 32,
        norm_group_size: int = 0,
        conv_impl: str = "im2col",
        rngs: nnx.Rngs,
    ):
        kind, blocks = RESNET_TABLE[depth]
        conv_norm = make_conv_norm(len(input_shape) - 1, norm, norm_groups=norm_groups,
                                   norm_group_size=norm_group_size, conv_impl=conv_impl, rngs=rngs)  # fmt: skip
        cin = _channels(STAGE_CHANNELS[0], width_mult)
        self.stem, self.stem_norm = conv_norm(
            input_shape[-1], cin, stem_kernel or kernel_size, stem_stride
        )
        plan = [("layer", "stem", "stem_norm", "")]
        if stem_pool:
            plan.append(("max_pool", 3, 2, 1))
        plan.append(("keep", "stem"))
        block_names = []
        for s, (planes, count) in enumerate(zip(STAGE_CHANNELS, blocks, strict=True)):
            planes = _channels(planes, width_mult)
            for b in range(count):
                stride = 2 if (s > 0 and b == 0) else 1
                name = f"stage{s + 1}_block{b}"
                setattr(self, name, Block(kind, cin, planes, stride, kernel_size=kernel_size,
                                          conv_norm=conv_norm))  # fmt: skip
                plan += [("block", name), ("keep", name)]
                block_names.append(name)
                cin = planes * EXPANSION[kind]
        self.block_names = tuple(block_names)
        self.plan = (*plan, ("avg_pool", 1))
        self.head = nnx.Linear(cin, num_classes, rngs=rngs)
