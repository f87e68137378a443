"""fedjax_deep: a vectorized JAX/Flax federated-learning simulator for studying deep models.

Every client model is stacked on a leading axis ``[C, ...]``; one jitted round advances every
client; averaging and divergence are reductions over that axis. The public API:

- :func:`make_client_update`: one client's local training (``lax.scan`` over local steps), a pure
  function to ``vmap`` over clients; :class:`ClientState` is what it carries.
- :func:`make_round`, :func:`init_server_state`, :class:`SimState`: the federated round.
- :func:`sweep_over_members`, :func:`stack_members`, :func:`injected_hparams`: the sweep axis
  (simulations stacked on a leading ``[R, ...]`` axis, each with its own hyper-parameters).
- :mod:`fedjax_deep.fl.algorithms` (:class:`Algorithm`): FedAvg, FedProx, SCAFFOLD, FedNova, FedDyn,
  FedBN as pure functions the round runs over the client axis.
- :func:`fedavg`, :class:`ServerRule`, :func:`weighted_mean`: server rules.
- :func:`divergence_metrics`, :func:`cka_metrics`: per-layer divergence (parameters, updates,
  gradients) and representation similarity over the client axis.
- :func:`build_model`, :class:`FunctionalModel`: models as a graph definition plus plain dicts.
- :func:`default_config`, :func:`run`: configs and the experiment runner.
"""

from fedjax_deep.aggregation import ServerRule, fedavg, normalized_weights, weighted_mean
from fedjax_deep.config import ConfigError, default_config
from fedjax_deep.data import ClientData, stack_clients
from fedjax_deep.fl import (
    ClientState,
    ServerState,
    SimState,
    algorithms,
    broadcast_clients,
    init_server_state,
    injected_hparams,
    make_client_update,
    make_round,
    stack_members,
    sweep_over_members,
)
from fedjax_deep.fl.algorithms import Algorithm
from fedjax_deep.metrics import cka_metrics, divergence_metrics
from fedjax_deep.models import FunctionalModel, build_model
from fedjax_deep.train import run

__version__ = "0.1.0"

__all__ = [
    "Algorithm",
    "ClientData",
    "ClientState",
    "ConfigError",
    "FunctionalModel",
    "ServerRule",
    "ServerState",
    "SimState",
    "broadcast_clients",
    "algorithms",
    "build_model",
    "cka_metrics",
    "default_config",
    "divergence_metrics",
    "fedavg",
    "init_server_state",
    "injected_hparams",
    "make_client_update",
    "make_round",
    "normalized_weights",
    "run",
    "stack_clients",
    "stack_members",
    "sweep_over_members",
    "weighted_mean",
]
