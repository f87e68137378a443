"""The simulation between rounds: :class:`SimState`, its initial value, and the population.

Per-client state that persists across rounds (optimizer states, BatchNorm statistics, models, an
algorithm's control variates) is held for the whole population ``P``, its rows indexed by client id
(``ClientData.client_ids``: ``0 .. P-1``). A round that trains a cohort draws it
(:func:`sample_cohort`), works on the cohort's rows (:func:`gather_cohort`) and writes them back
(:func:`scatter_cohort`); the clients not drawn keep theirs bit for bit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from fedjax_deep.fl import clients
from fedjax_deep.fl.algorithms import Algorithm, as_algorithm
from fedjax_deep.types import ModelState, Params, PyTree


@struct.dataclass
class SimState:
    """The whole simulation between rounds: the server's side and every client's persistent state.

    Attributes:
      params: the global model.
      model_state: the global model's BatchNorm statistics (``{}`` without BatchNorm): the
        example-weighted mean of the clients' statistics after each round. With local statistics
        (FedBN) it is used only to evaluate the global model.
      rule_state: the algorithm's server state (the server optimizer's optax state for FedAvg;
        SCAFFOLD's control variate; FedDyn's ``h``).
      round: int32 scalar, rounds completed.
      clients: per-client state that persists across rounds, for the whole population: a dict of
        pytrees whose leaves are ``[P, ...]``, gathered for the cohort and scattered back, sharded,
        padded and checkpointed by one tree-map each. Keys (each present only when used):
        ``'opt_state'`` (client optimizer states: centralized mode, independent runs),
        ``'model_state'`` (each client's own BatchNorm statistics: ``fl.bn_stats=local``, FedBN),
        ``'params'`` (each client's own model: independent runs, E7's null reference, where
        ``params`` is only their weighted mean, the reference point ``g``), ``'algorithm'`` (the
        algorithm's per-client state: SCAFFOLD's ``c_i``, FedDyn's ``h_i``, FedBN's BatchNorm
        parameters).
      client_hparams: the client optimizer's injected hyper-parameters (``optax.inject_hyperparams``;
        ``{}`` when it injects none). Client optimizer states that start afresh every round take
        these values, so the members of a sweep, whose states are stacked, each train with their own
        learning rate in one compiled program.
    """

    params: Params
    model_state: ModelState
    rule_state: PyTree
    round: jax.Array
    clients: dict = struct.field(default_factory=dict)
    client_hparams: dict = struct.field(default_factory=dict)


def init_sim_state(
    params: Params,
    model_state: ModelState,
    algorithm: Algorithm | optax.GradientTransformation,
    *,
    client_optimizer: optax.GradientTransformation | None = None,
    num_clients: int | None = None,
    local_model_state: bool = False,
    independent: bool = False,
    client_hparams: dict | None = None,
) -> SimState:
    """The state before round 0, for a population of ``num_clients`` when anything persists.

    ``client_optimizer``: keep client optimizer states across rounds; ``local_model_state``: keep
    each client's BatchNorm statistics local (also when the algorithm asks for it:
    :attr:`Algorithm.local_model_state`; only for a model that has them); ``independent``: keep
    each client's model (no averaging: independent runs from one initialization); the algorithm's
    own per-client state (:attr:`Algorithm.persistent_init`) is kept whenever it has leaves.
    ``client_hparams``: the client optimizer's injected hyper-parameters (:func:`injected_hparams`).
    """
    algorithm = as_algorithm(algorithm)
    rows = {}
    if client_optimizer is not None:
        rows["opt_state"] = jax.vmap(client_optimizer.init)(clients.broadcast(params, num_clients))
    if (local_model_state or algorithm.local_model_state) and jax.tree.leaves(model_state):
        rows["model_state"] = clients.broadcast(model_state, num_clients)
    if independent:
        rows["params"] = clients.broadcast(params, num_clients)
    persistent = algorithm.persistent_init(params)
    if jax.tree.leaves(persistent):
        rows["algorithm"] = clients.broadcast(persistent, num_clients)
    return SimState(
        params=params,
        model_state=model_state,
        rule_state=algorithm.server_init(params),
        round=jnp.zeros((), jnp.int32),
        clients=jax.tree.map(jnp.copy, rows),
        client_hparams=dict(client_hparams or {}),
    )


def injected_hparams(optimizer: optax.GradientTransformation, params: Params) -> dict:
    """The hyper-parameters an ``optax.inject_hyperparams`` optimizer holds in its state (``{}``
    for any other optimizer)."""
    return dict(getattr(optimizer.init(params), "hyperparams", {}))


def sample_cohort(key: jax.Array, num_examples: jax.Array, cohort_size: int) -> jax.Array:
    """``cohort_size`` client indices drawn uniformly without replacement among the clients that
    hold data (``num_examples [P] > 0``; padding clients are never drawn): ``[cohort_size]``."""
    scores = jax.random.uniform(key, num_examples.shape)
    return jnp.argsort(jnp.where(num_examples > 0, scores, 2.0))[:cohort_size].astype(jnp.int32)


def gather_cohort(state: SimState, client_ids: jax.Array) -> SimState:
    """``state`` with only the cohort's rows of the per-client state: ``[P, ...]`` -> ``[C, ...]``."""
    return state.replace(clients=jax.tree.map(lambda a: a[client_ids], state.clients))


def scatter_cohort(population: SimState, cohort: SimState, client_ids: jax.Array) -> SimState:
    """``cohort`` (a state after a round of the clients ``client_ids [C]``) with its per-client rows
    written back into ``population``'s: the clients not in the cohort keep theirs."""
    rows = jax.tree.map(lambda p, c: p.at[client_ids].set(c), population.clients, cohort.clients)
    return cohort.replace(clients=rows)
