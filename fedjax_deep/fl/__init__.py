"""Federated training as pure functions, one concern per module:

- :mod:`~fedjax_deep.fl.clients`: the client-axis vocabulary (broadcast, map, sum, mean,
  weighted_mean);
- :mod:`~fedjax_deep.fl.client`: one client's local training (:func:`make_client_update`);
- :mod:`~fedjax_deep.fl.state`: the simulation between rounds (:class:`SimState`) and the
  population's per-client state (cohort sampling, gather, scatter);
- :mod:`~fedjax_deep.fl.round`: the jitted round (:func:`make_round`);
- :mod:`~fedjax_deep.fl.forks`: the averaging penalty, forks to a null and layer mixes;
- :mod:`~fedjax_deep.fl.members`: the member (sweep) axis;
- :mod:`~fedjax_deep.fl.execution`: how the client axis runs (vmap, chunks, devices);
- :mod:`~fedjax_deep.fl.algorithms`: FedAvg, FedProx, SCAFFOLD, FedNova, FedDyn, FedBN;
- :mod:`~fedjax_deep.fl.privacy`: user-level DP-FedAvg (clipping, noise) and Poisson cohorts.

Names are imported from their module on first use, so ``fedjax_deep.fl.clients`` can be imported
(by the metrics) without the round.
"""

from fedjax_deep._lazy import lazy_exports

_EXPORTS = {
    "algorithms": "fedjax_deep.fl.algorithms",
    "clients": "fedjax_deep.fl.clients",
    "execution": "fedjax_deep.fl.execution",
    "forks": "fedjax_deep.fl.forks",
    "Algorithm": "fedjax_deep.fl.algorithms",
    "as_algorithm": "fedjax_deep.fl.algorithms",
    "ClientState": "fedjax_deep.fl.client",
    "make_client_grad": "fedjax_deep.fl.client",
    "make_client_update": "fedjax_deep.fl.client",
    "SimState": "fedjax_deep.fl.state",
    "init_sim_state": "fedjax_deep.fl.state",
    "injected_hparams": "fedjax_deep.fl.state",
    "sample_cohort": "fedjax_deep.fl.state",
    "gather_cohort": "fedjax_deep.fl.state",
    "scatter_cohort": "fedjax_deep.fl.state",
    "make_round": "fedjax_deep.fl.round",
    "round_client_keys": "fedjax_deep.fl.round",
    "ClientModels": "fedjax_deep.fl.round",
    "stack_members": "fedjax_deep.fl.members",
    "sweep_over_members": "fedjax_deep.fl.members",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
