"""Your own model: any Flax NNX module, or an ``init``/``apply`` pair, as a model the round takes.

The contract (``docs/your_own_study.md``):

- **Input and output**: ``module(x)`` maps ``x [B, *input_shape]`` to outputs ``[B, ...]``; with the
  default loss (softmax cross entropy) ``[B, num_classes]`` logits.
- **Keywords, optional**: a module whose ``__call__`` takes ``train=`` (BatchNorm, dropout
  switches) and/or ``mask=`` (``[B]`` bool, True for real examples, so padding stays out of batch
  statistics) gets them; one that takes neither is called as ``module(x)``.
- **State**: ``nnx.Param`` (trained, averaged) and ``nnx.BatchStat`` (averaged by example weight,
  or kept per client under FedBN); any other NNX state is refused.
- **Layers**: every module that owns a ``kernel`` parameter is a layer, named by its parameter
  path (``blocks/0/dense``), in the order the forward pass first uses it; divergence reports
  ``divergence/<layer>/kernel/<metric>`` and ``divergence/mean/<metric>`` over them.

:func:`wrap_module` turns a built module into ``(FunctionalModel, params, model_state)``;
:func:`from_functions` does the same for a pure ``init``/``apply`` pair; :func:`register_model`
adds a builder to :data:`fedjax_deep.models.MODELS` so a config (``model.name``) can name it.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from fedjax_deep.errors import FieldError

KEYWORDS = ("train", "mask")


def call_keywords(module: nnx.Module) -> tuple[str, ...]:
    """Which of ``train=`` and ``mask=`` the module's ``__call__`` accepts."""
    try:
        params = inspect.signature(module.__call__).parameters
    except (TypeError, ValueError):
        return KEYWORDS
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return KEYWORDS
    return tuple(k for k in KEYWORDS if k in params)


def _path_name(path) -> str:
    """A parameter path as divergence names it (``blocks/0/dense/kernel``)."""
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def layer_names(apply: Callable, params, model_state, input_shape) -> tuple[str, ...]:
    """The modules owning a ``kernel`` parameter, in the order the forward pass first uses them
    (from the traced forward pass: no arrays are allocated); ties keep the parameter order.
    Traced on float inputs, or on integer ones (token ids) where float inputs fail."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    try:
        x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
        closed = jax.make_jaxpr(lambda p, s, x: apply(p, s, x))(params, model_state, x)
    except Exception:  # an embedding refuses float inputs
        x = jax.ShapeDtypeStruct((1, *input_shape), jnp.int32)
        closed = jax.make_jaxpr(lambda p, s, x: apply(p, s, x))(params, model_state, x)
    invars = closed.jaxpr.invars[: len(leaves)]
    first: dict = {}
    for i, eqn in enumerate(closed.jaxpr.eqns):
        for v in eqn.invars:
            if not isinstance(v, jax.core.Literal) and v not in first:
                first[v] = i
    order = sorted(range(len(leaves)), key=lambda j: (first.get(invars[j], 1 << 30), j))
    names = [_path_name(leaves[j][0]) for j in order]
    return tuple(n[: -len("/kernel")] for n in names if n.endswith("/kernel"))


def wrap_module(module: nnx.Module, input_shape=None, layers=None):
    """A built NNX module as ``(FunctionalModel, params, model_state)``.

    Args:
      module: an ``nnx.Module`` (built, with its parameters).
      input_shape: one example's shape, for reading the layer order off the forward pass; None
        leaves the layers in parameter order.
      layers: the layer names to use instead (module paths owning a ``kernel``).
    """
    from fedjax_deep.models import FunctionalModel

    graphdef, params, model_state, rest = nnx.split(module, nnx.Param, nnx.BatchStat, ...)
    if jax.tree.leaves(rest):
        kinds = sorted({type(v).__name__ for v in jax.tree.leaves(rest, is_leaf=_is_var)})
        raise FieldError("model", type(module).__name__,
                         f"holds NNX state other than Param/BatchStat ({', '.join(kinds)}); "
                         "keep only nnx.Param and nnx.BatchStat (pass rngs to calls, not modules)")  # fmt: skip
    params, model_state = nnx.to_pure_dict(params), nnx.to_pure_dict(model_state)
    model = FunctionalModel(graphdef, (), call_kwargs=call_keywords(module))
    if layers is None:
        if input_shape is None:
            flat = jax.tree_util.tree_flatten_with_path(params)[0]
            names = [_path_name(p) for p, _ in flat]
            layers = tuple(n[: -len("/kernel")] for n in names if n.endswith("/kernel"))
        else:
            layers = layer_names(_no_train(model), params, model_state, input_shape)
    return dataclasses.replace(model, layers=tuple(layers)), params, model_state


def _is_var(x) -> bool:
    return isinstance(x, nnx.Variable)


def _no_train(model):
    return lambda p, s, x: model.apply(p, s, x, train=False)[0]


@dataclasses.dataclass(frozen=True)
class PairModel:
    """A model given as a pure pair: ``init(key, x) -> params`` and ``apply(params, x) -> outputs``
    (no BatchNorm state). Same ``apply`` signature as :class:`FunctionalModel`; layers are the
    parameter paths ending in ``kernel``."""

    apply_fn: Callable
    layers: tuple[str, ...]
    receptive_path: Any = None
    compute_dtype: Any = None

    def apply(self, params, model_state, x, *, train: bool, mask=None):
        del train, mask
        return self.apply_fn(params, x), model_state

    def representations(self, params, model_state, x):
        raise FieldError("fl.cka_probe", "init/apply model",
                         "representations need a built-in model; set fl.cka_probe=0")  # fmt: skip

    def with_compute_dtype(self, dtype):
        raise FieldError("precision", "bf16", "an init/apply model runs in float32; use default")

    @property
    def receptive_field(self):
        return None

    def layer_table(self) -> list[dict]:
        n = len(self.layers)
        return [{"index": i + 1, "name": name, "relative_depth": (i + 1) / n}
                for i, name in enumerate(self.layers)]  # fmt: skip


def from_functions(init: Callable, apply: Callable, input_shape, key: jax.Array):
    """An ``init``/``apply`` pair as ``(model, params, {})``: ``init(key, x [1, *input_shape])``
    returns the parameters (a nested dict; a weight matrix named ``kernel`` is a layer) and
    ``apply(params, x [B, ...])`` the outputs."""
    params = init(key, jnp.zeros((1, *input_shape), jnp.float32))
    model = PairModel(apply, ())
    layers = layer_names(_no_train(model), params, {}, input_shape)
    return dataclasses.replace(model, layers=layers), params, {}


def register_model(name: str, builder: Callable) -> Callable:
    """Adds ``builder`` to :data:`fedjax_deep.models.MODELS` under ``name``, so ``model.name`` may
    name it (the config reads the table when it validates: register before validating).

    ``builder(model_config, input_shape, num_classes, rngs)`` returns an ``nnx.Module`` (its layers
    are read off the forward pass), or ``(module, layer names, receptive path or None)`` as the
    built-in families do. ``model_config`` is ``config.model`` (``depth``, ``width``, ... are
    there for the builder to read). Returns ``builder``.
    """
    from fedjax_deep.models import MODELS

    if not callable(builder):
        raise TypeError(f"register_model({name!r}, ...) needs a builder function")
    MODELS[name] = builder
    return builder


def check_outputs(
    model,
    params,
    model_state,
    input_shape,
    num_classes: int,
    loss_name: str,
    dtype=jnp.float32,
    name: str = "model",
):
    """The model's output shape on a batch of two inputs of ``dtype``, against what the loss
    needs (shapes only); raises :class:`FieldError` naming ``model.name``."""
    x = jax.ShapeDtypeStruct((2, *input_shape), dtype)
    try:
        out = jax.eval_shape(lambda p, s, x: model.apply(p, s, x, train=False)[0],
                             params, model_state, x)  # fmt: skip
    except FieldError:
        raise
    except Exception as e:
        first = (str(e).splitlines() or [""])[0][:160]
        raise FieldError("model.name", name,
                         f"its forward pass fails on inputs [B, {', '.join(map(str, input_shape))}] "
                         f"({type(e).__name__}: {first}); make it accept the data's shape") from None  # fmt: skip
    shape = getattr(out, "shape", None)
    if shape is None or len(shape) < 1 or shape[0] != 2:
        raise FieldError("model.name", name, f"returns shape {shape} on a batch of 2; it must "
                         "return one output row per example, shape [B, ...]")  # fmt: skip
    if loss_name == "softmax_cross_entropy" and tuple(shape) != (2, num_classes):
        raise FieldError("model.name", name,
                         f"outputs [B, {', '.join(map(str, shape[1:]))}] where softmax_cross_"
                         f"entropy needs logits [B, {num_classes}] (the data's classes); end the "
                         "model with a layer of that many outputs")  # fmt: skip
