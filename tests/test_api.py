"""The public API: curated, cheap to import, one meaning per name; the config system imports no JAX."""

import subprocess
import sys

import fedjax_deep as fd

RUNNER = ("orbax", "tqdm", "matplotlib")


def _loaded(code: str, prefixes) -> list[str]:
    """The modules among ``prefixes`` that ``code`` leaves in ``sys.modules`` of a fresh process."""
    probe = (
        f"{code}\nimport sys\n"
        f"print(sorted({{m.split('.')[0] if m.split('.')[0] in {prefixes!r} else m "
        f"for m in sys.modules if any(m == p or m.startswith(p + '.') for p in {prefixes!r})}}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return eval(out.stdout.strip().splitlines()[-1])


def test_import_pays_for_nothing_and_the_simulator_not_for_the_runner():
    assert _loaded("import fedjax_deep", (*RUNNER, "jax")) == []
    simulator = ("import fedjax_deep as fd\nfd.make_round, fd.make_client_update, fd.clients, "
                 "fd.SimState, fd.algorithms, fd.divergence_metrics, fd.build_model, "
                 "fd.stack_clients, fd.default_config")  # fmt: skip
    assert _loaded(simulator, RUNNER) == []


def test_the_config_system_imports_neither_jax_nor_flax_nor_the_round():
    assert _loaded("import fedjax_deep.config", ("jax", "flax", "fedjax_deep.fl")) == []


def test_every_public_name_resolves_and_is_listed():
    assert sorted(fd.__all__) == sorted(fd._EXPORTS)
    for name in fd.__all__:
        assert getattr(fd, name) is not None, name
    import fedjax_deep.train

    assert fd.run is fedjax_deep.train.run
    assert fd.clients.weighted_mean and fd.algorithms.fedavg


def test_old_names_are_gone():
    for name in ("ServerState", "ServerRule", "fedavg", "init_server_state", "broadcast_clients",
                 "weighted_mean", "normalized_weights", "stack_seeds", "make_seeded_round"):  # fmt: skip
        assert not hasattr(fd, name), name
    import fedjax_deep.fl as fl

    for name in ("ServerState", "stack_seeds", "make_seeded_round", "init_server_state"):
        assert not hasattr(fl, name), name
    out = subprocess.run([sys.executable, "-c", "import fedjax_deep.aggregation"],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode != 0 and "ModuleNotFoundError" in out.stderr
