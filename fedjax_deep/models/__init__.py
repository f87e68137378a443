"""Model registry, the functional view of a Flax NNX model, and introspection.

A model is built once with :func:`build_model`, split with ``nnx.split`` into a graph definition and
two plain nested dicts: ``params`` (``nnx.Param``) and ``model_state`` (``nnx.BatchStat``, ``{}`` for
models without BatchNorm). Everything downstream (the client step, the round, divergence, checkpoints)
sees only those dicts and the pure :attr:`FunctionalModel.apply`; ``nnx.merge`` runs inside traced
code, so NNX costs nothing at run time.

Families (``config.model.name``): ``plain_cnn``, ``plain_mlp``, ``vgg`` (depth 11/13/16/19),
``resnet`` (depth 18/34/50/101/152). Their depth tables are data (``VGG_TABLE``, ``RESNET_TABLE``),
and so is the registry (``MODELS``: a :class:`Family` per name, the module and the config fields it
takes); every family's forward pass, layer names and receptive path come from one plan interpreter
(:class:`~fedjax_deep.models.layers.Classifier`).
Knobs shared across families (``config.model``): ``width`` / ``width_mult``, ``kernel_size``
(the blocks' kernel), ``stem_kernel`` / ``stem_stride`` / ``stem_pool``, ``norm``
(none, batch, group, layer), and the dataset's number of classes and input shape.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from fedjax_deep.errors import FieldError
from fedjax_deep.models.layers import (
    CONV_IMPLS,
    NORMS,
    Classifier,
    Conv,
    adaptive_avg_pool,
    apply_norm,
    conv_im2col,
    conv_native,
    make_norm,
    max_pool,
)
from fedjax_deep.models.own import (
    PairModel,
    check_outputs,
    from_functions,
    layer_names,
    register_model,
    wrap_module,
)
from fedjax_deep.models.plain import HEADS, PlainCNN, PlainMLP
from fedjax_deep.models.resnet import RESNET_TABLE, STAGE_CHANNELS, ResNet
from fedjax_deep.models.transformer import POOLS, Transformer, check_transformer_config
from fedjax_deep.models.vgg import VGG, VGG_TABLE, vgg_min_input


@dataclasses.dataclass(frozen=True)
class Family:
    """A registry entry: a :class:`~fedjax_deep.models.layers.Classifier` class, the
    ``config.model`` fields it takes as keyword arguments and its table depths (``()``: any).

    Called as a builder ``(model_config, input_shape, num_classes, rngs)``, it returns ``(module,
    kernel-owning layer names in forward order, receptive-field path or None)``, both read off the
    module's plan.
    """

    module: type[Classifier]
    knobs: tuple[str, ...]
    depths: tuple[int, ...] = ()

    def __call__(self, cfg, input_shape, num_classes: int, rngs: nnx.Rngs):
        # Sequences as tuples: static, hashable attributes in the graph definition.
        kwargs = {k: cfg[k] for k in self.knobs}
        kwargs = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in kwargs.items()}
        module = self.module(tuple(input_shape), num_classes, **kwargs, rngs=rngs)
        return module, module.layer_names(), module.receptive_path()


_NORM = ("norm", "norm_groups", "norm_group_size")
_CONV = ("kernel_size", "conv_impl", *_NORM)
_STEM = ("stem_kernel", "stem_stride", "stem_pool")

# name -> builder(model_config, input_shape, num_classes, rngs)
#   -> (module, kernel-owning layer names in forward order, receptive-field path or None),
#   or just the module (its layers read off its forward pass: fedjax_deep.models.own);
# a Family or any callable of that signature. register_model adds one after import.
MODELS: dict[str, Callable[..., tuple[nnx.Module, tuple[str, ...], Any]]] = {
    "plain_cnn": Family(
        PlainCNN,
        ("depth", "width", "widths", "strides", "skip", "skip_before_relu", "head", *_CONV, *_STEM),
    ),
    "plain_mlp": Family(PlainMLP, ("depth", "width", "skip", *_NORM)),
    "vgg": Family(
        VGG, ("depth", "width_mult", "head_pool", "classifier", *_CONV), tuple(VGG_TABLE)
    ),
    "resnet": Family(ResNet, ("depth", "width_mult", *_CONV, *_STEM), tuple(RESNET_TABLE)),
    "transformer": Family(Transformer, ("depth", "width", "heads")),
    "vit": Family(Transformer, ("depth", "width", "heads", "patch_size", "pool")),
}
DEPTHS = {name: f.depths for name, f in MODELS.items() if getattr(f, "depths", ())}


def _cast(tree, dtype):
    """Floating leaves of ``tree`` in ``dtype`` (the others as they are)."""
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


@dataclasses.dataclass(frozen=True)
class FunctionalModel:
    """A model as data plus one pure function.

    Attributes:
      graphdef: the NNX graph definition (static).
      layers: names of the kernel-owning modules in forward order (input side first); a layer's
        kernel lives at the parameter path ``<name>/kernel``. Divergence profiles use this order
        (a ResNet block lists its main-path convolutions, then its projection shortcut).
      receptive_path: ``(kernel, stride, dilation)`` of every convolution and pool on the longest
        path up to the last convolution, or None for models without convolutions.
      call_kwargs: the keywords the module's ``__call__`` takes of ``train`` and ``mask`` (an own
        module may take neither: :func:`~fedjax_deep.models.own.wrap_module`).
    """

    graphdef: Any
    layers: tuple[str, ...]
    receptive_path: tuple[tuple[int, int, int], ...] | None = None
    compute_dtype: Any = None
    call_kwargs: tuple[str, ...] = ("train", "mask")

    def with_compute_dtype(self, dtype) -> FunctionalModel:
        """The same model computing its activations and products in ``dtype`` (``jnp.bfloat16``:
        the ``bf16`` precision policy); parameters, statistics and logits stay float32."""
        return dataclasses.replace(self, compute_dtype=dtype)

    def apply(self, params, model_state, x, *, train: bool, mask=None):
        """Logits and the updated model state.

        Args:
          params: the model's parameters (one model; vmap for a client axis).
          model_state: BatchNorm statistics, ``{}`` when the model has none.
          x: ``[B, *input_shape]``.
          train: batch statistics (and their update) if True, running statistics if False.
          mask: ``[B]`` bool, True for real examples; padding is kept out of batch statistics.

        Returns:
          ``(logits [B, num_classes], new_model_state)``.
        """
        module, x = self._merge(params, model_state, x)
        kwargs = {"train": train, "mask": mask}
        logits = module(x, **{k: kwargs[k] for k in self.call_kwargs})
        new_state = nnx.to_pure_dict(nnx.state(module, nnx.BatchStat))
        if self.compute_dtype is None:
            return logits, new_state
        new_state = jax.tree.map(lambda n, o: n.astype(o.dtype), new_state, model_state)
        return logits.astype(jnp.float32), new_state

    def representations(self, params, model_state, x) -> dict[str, jax.Array]:
        """Every layer's activation on ``x`` in evaluation mode (running statistics):
        ``{name: [B, ...]}`` in forward order (a jitted call returns the keys sorted, as for any
        dict pytree), the output of each convolution (after norm, ReLU and any
        skip), hidden linear layer or ResNet block (``stem`` and ``stage{s}_block{b}``), and
        ``head`` (the logits). What representation similarity (linear CKA,
        ``fedjax_deep.metrics.divergence.cka_metrics``) compares across client models."""
        captured: list = []
        module, x = self._merge(params, model_state, x)
        if not isinstance(module, Classifier):
            raise FieldError("fl.cka_probe", type(module).__name__,
                             "representations need a built-in model family; set fl.cka_probe=0")  # fmt: skip
        module(x, train=False, representations=captured)
        return {name: value.astype(jnp.float32) for name, value in captured}

    def _merge(self, params, model_state, x):
        """The module and its input, both in ``compute_dtype`` if one is set."""
        if self.compute_dtype is None:
            return nnx.merge(self.graphdef, params, model_state), x
        # Mixed precision: the float32 parameters are cast for the forward pass (their gradients
        # come back in float32 through the casts), the logits and the loss are float32.
        dtype = self.compute_dtype
        return nnx.merge(self.graphdef, *_cast((params, model_state), dtype)), x.astype(dtype)

    @property
    def receptive_field(self) -> int | None:
        """Theoretical receptive field (pixels along one spatial dim) of the last convolution."""
        return None if self.receptive_path is None else receptive_field(self.receptive_path)

    def layer_table(self) -> list[dict]:
        """Layers in forward order with their depth index (1-based) and relative depth ``l / L``."""
        n = len(self.layers)
        return [
            {"index": i + 1, "name": name, "relative_depth": (i + 1) / n}
            for i, name in enumerate(self.layers)
        ]


def receptive_field(path) -> int:
    """``1 + sum_i (k_i - 1) d_i prod_{j<i} s_j`` over ``(kernel, stride, dilation)`` triples."""
    rf, jump = 1, 1
    for k, s, d in path:
        rf += (k - 1) * d * jump
        jump *= s
    return rf


def check_model_config(cfg, input_shape) -> None:
    """Knob checks that need the input shape; raises :class:`~fedjax_deep.errors.FieldError` naming the field."""
    name = cfg.name
    if name in ("transformer", "vit"):
        return check_transformer_config(cfg, input_shape)
    if name in DEPTHS and cfg.depth not in DEPTHS[name]:
        raise FieldError(
            "model.depth", cfg.depth, f"{name} depths are {', '.join(map(str, DEPTHS[name]))}"
        )
    if name in ("vgg", "resnet"):
        base = min(c for c in (VGG_TABLE[cfg.depth] if name == "vgg" else STAGE_CHANNELS)
                   if c != "M")  # fmt: skip
        if round(base * cfg.width_mult) < 1:
            raise FieldError(
                "model.width_mult", cfg.width_mult,
                f"rounds {name}'s {base}-channel stage to 0 channels; use >= {0.5 / base:.3g}",
            )  # fmt: skip
    if name not in ("vgg", "resnet", "plain_cnn"):
        return  # the rest are the image families' checks
    spatial = min(input_shape[:-1])
    if name == "vgg" and spatial < vgg_min_input(cfg.depth):
        raise FieldError(
            "model.depth", cfg.depth,
            f"VGG-{cfg.depth}'s pools shrink a {spatial}-pixel input below 1x1; "
            f"it needs >= {vgg_min_input(cfg.depth)} pixels",
        )  # fmt: skip
    if name == "vgg" and (spatial // vgg_min_input(cfg.depth)) % cfg.head_pool:
        raise FieldError(
            "model.head_pool", cfg.head_pool,
            f"VGG-{cfg.depth}'s final {spatial // vgg_min_input(cfg.depth)}-pixel map is not a "
            "multiple of it; use 1",
        )  # fmt: skip
    if name in ("resnet", "plain_cnn"):
        n = (spatial - 1) // cfg.stem_stride + 1
        if cfg.stem_pool:
            n = (n - 1) // 2 + 1
        if name == "resnet":
            n = (n - 1) // 8 + 1  # three stride-2 stages
        if n < 1 or cfg.stem_stride > spatial:
            raise FieldError(
                "model.stem_stride", cfg.stem_stride,
                f"the stem shrinks the {spatial}-pixel input below 1x1; use a smaller stride "
                "or stem_pool=false",
            )  # fmt: skip


def build_model(model_config, input_shape, num_classes: int, key: jax.Array):
    """Builds a registered model and splits it.

    Returns:
      ``(model: FunctionalModel, params, model_state)``.
    """
    if model_config.name not in MODELS:
        raise FieldError(
            "model.name", model_config.name, f"unknown model; use one of {', '.join(MODELS)}"
        )
    check_model_config(model_config, input_shape)
    built = MODELS[model_config.name](model_config, input_shape, num_classes, nnx.Rngs(params=key))
    if isinstance(built, nnx.Module):  # an own builder: layers from its forward pass
        return wrap_module(built, input_shape)
    module, layers, path = built
    graphdef, params, model_state, rest = nnx.split(module, nnx.Param, nnx.BatchStat, ...)
    if jax.tree.leaves(rest):
        raise ValueError(f"model {model_config.name!r} holds state other than Param/BatchStat")
    model = FunctionalModel(graphdef, tuple(layers), None if path is None else tuple(path))
    return model, nnx.to_pure_dict(params), nnx.to_pure_dict(model_state)


def abstract_params(model_config, input_shape, num_classes: int):
    """Parameter shapes without allocating them (``jax.eval_shape``): for counting big models."""
    return jax.eval_shape(
        lambda key: build_model(model_config, input_shape, num_classes, key)[1],
        jax.random.key(0),
    )


def param_count(params) -> int:
    """Number of parameters (BatchNorm running statistics are state, not parameters)."""
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(params)))


def flops_per_example(model: FunctionalModel, params, model_state, input_shape) -> float:
    """Forward FLOPs of one example in eval mode, from XLA's cost analysis."""
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    compiled = (
        jax.jit(lambda p, s, x: model.apply(p, s, x, train=False)[0])
        .lower(params, model_state, x)
        .compile()
    )
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost["flops"])


__all__ = [
    "CONV_IMPLS",
    "DEPTHS",
    "HEADS",
    "MODELS",
    "NORMS",
    "POOLS",
    "PairModel",
    "RESNET_TABLE",
    "VGG_TABLE",
    "Classifier",
    "Conv",
    "Family",
    "FunctionalModel",
    "PlainCNN",
    "PlainMLP",
    "ResNet",
    "Transformer",
    "VGG",
    "abstract_params",
    "adaptive_avg_pool",
    "apply_norm",
    "build_model",
    "check_model_config",
    "check_outputs",
    "from_functions",
    "layer_names",
    "register_model",
    "wrap_module",
    "conv_im2col",
    "conv_native",
    "flops_per_example",
    "make_norm",
    "max_pool",
    "param_count",
    "receptive_field",
]
