"""fedjax_deep: a vectorized JAX/Flax federated-learning simulator for studying deep models.

Every client model is stacked on a leading axis ``[C, ...]``; one jitted round advances every
client; averaging and divergence are reductions over that axis. The public API:

- :func:`make_client_update`, :class:`ClientState`: one client's local training (``lax.scan`` over
  local steps), a pure function to ``vmap`` over clients.
- :mod:`clients`: the client-axis vocabulary (``broadcast``, ``map``, ``sum``, ``mean``,
  ``weighted_mean``, each with an explicit ``axis_name``).
- :func:`make_round`, :func:`init_sim_state`, :class:`SimState`: the federated round and the
  simulation's state between rounds.
- :mod:`algorithms`, :class:`Algorithm`: FedAvg (with any server optax optimizer), FedProx,
  SCAFFOLD, FedNova, FedDyn, FedBN as pure functions the round runs over the client axis.
- :func:`sweep_over_members`, :func:`stack_members`, :func:`injected_hparams`: the member axis
  (simulations stacked on a leading ``[R, ...]`` axis, each with its own hyper-parameters).
- :func:`divergence_metrics`, :func:`cka_metrics`: per-layer divergence (parameters, updates,
  gradients) and representation similarity over the client axis.
- :func:`build_model`, :class:`FunctionalModel`: models as a graph definition plus plain dicts.
- :class:`ClientData`, :func:`stack_clients`: client data padded and stacked on the device.
- :func:`default_config`, :func:`run`: configs and the experiment runner; :class:`InputError`: bad
  input (a :class:`ConfigError` for a config field).

Names are imported from their module on first use: ``import fedjax_deep`` costs nothing, and the
simulator's names never import the runner's dependencies (orbax, tqdm, matplotlib).
"""

from typing import TYPE_CHECKING

from fedjax_deep._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "ClientState": "fedjax_deep.fl.client",
    "make_client_update": "fedjax_deep.fl.client",
    "clients": "fedjax_deep.fl.clients",
    "SimState": "fedjax_deep.fl.state",
    "init_sim_state": "fedjax_deep.fl.state",
    "injected_hparams": "fedjax_deep.fl.state",
    "make_round": "fedjax_deep.fl.round",
    "algorithms": "fedjax_deep.fl.algorithms",
    "Algorithm": "fedjax_deep.fl.algorithms",
    "stack_members": "fedjax_deep.fl.members",
    "sweep_over_members": "fedjax_deep.fl.members",
    "cka_metrics": "fedjax_deep.metrics",
    "divergence_metrics": "fedjax_deep.metrics",
    "FunctionalModel": "fedjax_deep.models",
    "build_model": "fedjax_deep.models",
    "ClientData": "fedjax_deep.data",
    "stack_clients": "fedjax_deep.data",
    "default_config": "fedjax_deep.config",
    "ConfigError": "fedjax_deep.errors",
    "InputError": "fedjax_deep.errors",
    "run": "fedjax_deep.train",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
# Curated; tests/test_api.py checks it names exactly the table above.
__all__ = [
    "Algorithm",
    "ClientData",
    "ClientState",
    "ConfigError",
    "FunctionalModel",
    "InputError",
    "SimState",
    "algorithms",
    "build_model",
    "cka_metrics",
    "clients",
    "default_config",
    "divergence_metrics",
    "init_sim_state",
    "injected_hparams",
    "make_client_update",
    "make_round",
    "run",
    "stack_clients",
    "stack_members",
    "sweep_over_members",
]

if TYPE_CHECKING:  # what static tools see; at run time the names load on first use
    from fedjax_deep.config import default_config
    from fedjax_deep.data import ClientData, stack_clients
    from fedjax_deep.errors import ConfigError, InputError
    from fedjax_deep.fl import algorithms, clients
    from fedjax_deep.fl.algorithms import Algorithm
    from fedjax_deep.fl.client import ClientState, make_client_update
    from fedjax_deep.fl.members import stack_members, sweep_over_members
    from fedjax_deep.fl.round import make_round
    from fedjax_deep.fl.state import SimState, init_sim_state, injected_hparams
    from fedjax_deep.metrics import cka_metrics, divergence_metrics
    from fedjax_deep.models import FunctionalModel, build_model
    from fedjax_deep.train import run
