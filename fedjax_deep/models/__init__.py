"""Model registry and the functional view of a Flax NNX model.

A model is built once with :func:`build_model`, split with ``nnx.split`` into a graph definition and
two plain nested dicts: ``params`` (``nnx.Param``) and ``model_state`` (``nnx.BatchStat``, ``{}`` for
models without BatchNorm). Everything downstream (the client step, the round, divergence, checkpoints)
sees only those dicts and the pure :attr:`FunctionalModel.apply`; ``nnx.merge`` runs inside traced
code, so NNX costs nothing at run time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

from fedjax_deep.models.layers import (
    CONV_IMPLS,
    NORMS,
    Conv,
    apply_norm,
    conv_im2col,
    conv_native,
    make_norm,
)
from fedjax_deep.models.plain import HEADS, PlainCNN


def _plain_cnn(cfg, input_shape, num_classes, rngs):
    module = PlainCNN(
        tuple(input_shape),
        num_classes,
        depth=cfg.depth,
        width=cfg.width,
        kernel_size=cfg.kernel_size,
        norm=cfg.norm,
        norm_groups=cfg.norm_groups,
        skip=cfg.skip,
        head=cfg.head,
        widths=tuple(cfg.widths),
        strides=tuple(cfg.strides),
        conv_impl=cfg.conv_impl,
        rngs=rngs,
    )
    layers = tuple(f"conv_{i}" for i in range(cfg.depth)) + ("head",)
    return module, layers


# name -> builder(model_config, input_shape, num_classes, rngs) -> (module, layer names in forward order)
MODELS: dict[str, Callable[..., tuple[nnx.Module, tuple[str, ...]]]] = {
    "plain_cnn": _plain_cnn,
}


@dataclasses.dataclass(frozen=True)
class FunctionalModel:
    """A model as data plus one pure function.

    Attributes:
      graphdef: the NNX graph definition (static).
      layers: names of the kernel-owning modules in forward order (input side first); a layer's
        kernel lives at ``params[name]['kernel']``. Divergence profiles use this order.
    """

    graphdef: Any
    layers: tuple[str, ...]

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
        module = nnx.merge(self.graphdef, params, model_state)
        logits = module(x, train=train, mask=mask)
        return logits, nnx.to_pure_dict(nnx.state(module, nnx.BatchStat))


def build_model(model_config, input_shape, num_classes: int, key: jax.Array):
    """Builds a registered model and splits it.

    Returns:
      ``(model: FunctionalModel, params, model_state)``.
    """
    if model_config.name not in MODELS:
        raise ValueError(f"model.name={model_config.name!r}: use one of {sorted(MODELS)}")
    module, layers = MODELS[model_config.name](
        model_config, input_shape, num_classes, nnx.Rngs(params=key)
    )
    graphdef, params, model_state, rest = nnx.split(module, nnx.Param, nnx.BatchStat, ...)
    if jax.tree.leaves(rest):
        raise ValueError(f"model {model_config.name!r} holds state other than Param/BatchStat")
    return (
        FunctionalModel(graphdef, layers),
        nnx.to_pure_dict(params),
        nnx.to_pure_dict(model_state),
    )


__all__ = [
    "CONV_IMPLS",
    "HEADS",
    "MODELS",
    "NORMS",
    "Conv",
    "FunctionalModel",
    "PlainCNN",
    "apply_norm",
    "build_model",
    "conv_im2col",
    "conv_native",
    "make_norm",
]
