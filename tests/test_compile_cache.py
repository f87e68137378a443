"""The compilation cache's setting: an impossible directory is one line naming
``config.compile_cache`` (exit 2, nothing written), not JAX's warnings mid-run."""

import pathlib

import jax
import pytest

from fedjax_deep import cli, compile_cache
from fedjax_deep.config import ConfigError

TINY = str(pathlib.Path(__file__).parents[1] / "configs" / "digits_tiny.py")


def test_an_impossible_cache_directory_is_one_line_naming_the_field(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    workdir = tmp_path / "run"
    code = cli.main(["train", "--config", TINY, "--workdir", str(workdir), "--no-progress",
                     f"--config.compile_cache={blocker / 'cache'}"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: config.compile_cache='{blocker / 'cache'}': cannot hold"), err
    assert "give a writable directory, or off" in err
    assert not workdir.exists()
    with pytest.raises(ConfigError, match="config.compile_cache="):
        compile_cache.enable(str(blocker))  # a file, not a directory


def test_auto_with_an_unusable_directory_warns_once_and_compiles_without_it(
    tmp_path, monkeypatch, capsys
):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    before = jax.config.jax_compilation_cache_dir, jax.config.jax_enable_compilation_cache
    monkeypatch.setenv("FEDJAX_DEEP_COMPILE_CACHE", str(blocker / "cache"))
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        assert compile_cache.enable("auto") is None and compile_cache.directory() is None
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("warning: the compilation cache ")
        assert "config.compile_cache" in err
    finally:
        jax.config.update("jax_compilation_cache_dir", before[0])
        jax.config.update("jax_enable_compilation_cache", before[1])


def test_a_directory_given_is_the_one_in_use(tmp_path):
    before = jax.config.jax_compilation_cache_dir, jax.config.jax_enable_compilation_cache
    try:
        assert compile_cache.enable(str(tmp_path / "c")) == str(tmp_path / "c")
        assert compile_cache.directory() == str(tmp_path / "c") and (tmp_path / "c").is_dir()
        assert compile_cache.enable("off") is None and compile_cache.directory() is None
    finally:
        if before[0]:
            compile_cache.enable(before[0])
        jax.config.update("jax_enable_compilation_cache", before[1])
