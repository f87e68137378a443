"""Every execution strategy computes the same round: vmap, chunks, sharded devices, several hosts."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
import strategy_worker

from fedjax_deep.data import stack_clients
from fedjax_deep.fl import execution as ex

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "strategy_worker.py")


def _assert_same(reference: dict, other: dict):
    keys = [k for k in reference if k not in ("devices", "processes")]
    assert keys and set(keys) <= set(other)
    for k in keys:
        np.testing.assert_allclose(other[k], reference[k], rtol=1e-5, atol=1e-5, err_msg=k)
        assert np.all(np.isfinite(reference[k])), k


@pytest.fixture(scope="module")
def reference():
    return strategy_worker.run("vmap")


@pytest.mark.parametrize("chunk", [1, 4])
def test_chunked_equals_vmap(reference, chunk):
    _assert_same(reference, strategy_worker.run("chunked", chunk))


def test_persistent_client_state_chunked_equals_vmap():
    _assert_same(strategy_worker.run("vmap", persist=True), strategy_worker.run("chunked", 2, True))


def _worker(tmp_path, name, args, devices, extra_env=None):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    env["JAX_PLATFORMS"] = "cpu"
    env.update(extra_env or {})
    out = tmp_path / f"{name}.npz"
    return out, subprocess.Popen(
        [sys.executable, WORKER, str(out), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(out, proc):
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log[-3000:]
    return dict(np.load(out)) if out.exists() else None


@pytest.mark.parametrize("chunk", [0, 1])
def test_sharded_over_four_devices_equals_vmap(reference, tmp_path, chunk):
    result = _finish(*_worker(tmp_path, "sharded", ["sharded", str(chunk)], devices=4))
    assert int(result["devices"]) == 4  # 6 clients, padded to 8, 2 per device
    _assert_same(reference, result)


def test_sharded_persistent_client_state(tmp_path):
    result = _finish(*_worker(tmp_path, "sp", ["sharded", "1", "--persist"], devices=4))
    _assert_same(strategy_worker.run("vmap", persist=True), result)


def test_scaffold_vmap_chunked_and_sharded_agree(tmp_path):
    """SCAFFOLD's control variates (server c and every client's c_i) agree across strategies."""
    reference = strategy_worker.run("vmap", algorithm="scaffold")
    assert any(k.startswith("c_i:") for k in reference)
    _assert_same(reference, strategy_worker.run("chunked", 2, algorithm="scaffold"))
    result = _finish(
        *_worker(tmp_path, "sc", ["sharded", "1", "--algorithm", "scaffold"], devices=4)
    )
    _assert_same(reference, result)


def test_two_processes_equal_single_process(reference, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [
        _worker(
            tmp_path,
            "multihost",
            [
                "sharded",
                "--process-id",
                str(i),
                "--num-processes",
                "2",
                "--coordinator",
                f"127.0.0.1:{port}",
            ],
            devices=2,
        )
        for i in range(2)
    ]
    results = [_finish(*p) for p in procs]
    result = results[0]
    assert int(result["processes"]) == 2 and int(result["devices"]) == 4
    _assert_same(reference, result)


def test_pad_clients_adds_weightless_clients():
    x = np.ones((10, 2), np.float32)
    data = stack_clients(x, np.zeros(10, np.int32), [np.arange(4), np.arange(4, 7), [7, 8, 9]])
    padded = ex.pad_clients(data, 4)
    assert padded.num_clients == 4
    assert padded.num_examples.tolist() == [4, 3, 3, 0]
    assert len(set(padded.client_ids.tolist())) == 4
    assert ex.pad_clients(padded, 4) is padded


def test_choose_execution(monkeypatch):
    cpu = jax.devices()[:1]
    e, why = ex.choose_execution("auto", 16, devices=cpu, backend="cpu")
    assert e.chunk_size == 1 and e.mesh is None and "auto" in why
    e, _ = ex.choose_execution("vmap", 16, devices=cpu)
    assert e.chunk_size == 0
    e, _ = ex.choose_execution("chunked", 16, chunk_size=4, devices=cpu)
    assert e.chunk_size == 4
    e, _ = ex.choose_execution("sharded", 16, devices=cpu)
    assert e.mesh is not None and e.num_shards == 1
    monkeypatch.setattr(ex, "available_memory_bytes", lambda device=None: 10 * 2**30)
    e, why = ex.choose_execution(
        "auto", 1000, bytes_per_client=100 * 2**20, devices=cpu, backend="gpu"
    )
    assert e.chunk_size == 51 and "51 clients" in why  # 5 GiB / 100 MiB
    e, _ = ex.choose_execution("auto", 16, bytes_per_client=100 * 2**20, devices=cpu, backend="gpu")
    assert e.chunk_size == 0  # all 16 fit: one vmap
    with pytest.raises(ValueError, match="strategy='pmap'"):
        ex.choose_execution("pmap", 4)


@pytest.mark.slow  # about 30 s alone; the sharded tests above run the same client optimizer
def test_cli_sharded_with_privacy_and_unequal_work_equals_vmap(tmp_path):
    """The whole training path (the CLI's client optimizer carries a step count made fresh for
    each client; inside shard_map it must vary over the client axis like the rest of the scan's
    carry) with DP-FedAvg, Poisson cohorts, drawn step budgets and dropped clients: 6 clients
    padded to 8 on 4 devices give every metric row of vmap on one."""
    import json

    tiny = os.path.join(os.path.dirname(WORKER), "..", "configs", "digits_tiny.py")
    flags = ["--no-progress", "--config.compile_cache=off", "--config.log.tensorboard=off",
             "--config.fl.num_clients=6", "--config.privacy.clip_norm=1.0",
             "--config.privacy.noise_multiplier=0.5", "--config.fl.cohort_sampling=poisson",
             "--config.fl.cohort_size=4", "--config.fl.budget_dist=uniform",
             "--config.fl.dropout_rate=0.2"]  # fmt: skip
    code = (
        "import sys; from fedjax_deep import cli\n"
        "for ex in ('vmap', 'sharded'):\n"
        f"    assert cli.main(['train', '--config', {tiny!r}, '--workdir', "
        f"{str(tmp_path)!r} + '/' + ex, '--config.fl.execution=' + ex, *{flags!r}]) == 0\n"
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {ex: [json.loads(x) for x in (tmp_path / ex / "metrics.jsonl").read_text().splitlines()]
            for ex in ("vmap", "sharded")}  # fmt: skip
    assert len(rows["vmap"]) == 2 and rows["vmap"][0]["train/cohort_size"] >= 1
    info = json.loads((tmp_path / "sharded" / "run_info.json").read_text())
    assert "sharded" in json.dumps(info["execution"])
    for a, b in zip(rows["vmap"], rows["sharded"], strict=True):
        assert set(a) == set(b)
        for k, v in a.items():
            if isinstance(v, float) and not k.startswith("time/"):
                np.testing.assert_allclose(b[k], v, rtol=1e-4, atol=1e-5, err_msg=k)
