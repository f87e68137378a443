"""JAX's persistent compilation cache for the runner (``config.compile_cache``).

A rerun, a resume and the later batches of a sweep group load their compiled programs from it
instead of compiling them again. This module owns where the cache lives (:func:`enable`), which
directory is in use (:func:`directory`) and how many programs this process loaded from it
(:func:`hits`, which ``run_info.json`` records).
"""

from __future__ import annotations

import os
import sys
import tempfile

import jax
from jax.experimental.compilation_cache import compilation_cache

from fedjax_deep.config import ConfigError


def enable(setting: str) -> str | None:
    """Turns the cache on or off: ``auto`` uses a per-user directory ($FEDJAX_DEEP_COMPILE_CACHE,
    else $XDG_CACHE_HOME or ~/.cache, then fedjax_deep/jax) unless JAX already has one; ``off``
    turns it off; anything else is the directory. Returns the directory in use (None: off).
    Programs that compiled in under a second are not cached (JAX's
    ``jax_persistent_cache_min_compile_time_secs``).

    A directory that cannot be created or written is a :class:`ConfigError` naming
    ``config.compile_cache`` when it was given, and, under ``auto``, one warning line and no
    cache (JAX would otherwise warn on every program it fails to read or write)."""
    if setting == "off":
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    if setting == "auto":
        path = jax.config.jax_compilation_cache_dir or os.environ.get("FEDJAX_DEEP_COMPILE_CACHE")
        if not path:
            base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
                os.path.expanduser("~"), ".cache"
            )
            path = os.path.join(base, "fedjax_deep", "jax")
    else:
        path = os.path.expanduser(setting)
    problem = _unusable(path)
    if problem and setting != "auto":
        raise ConfigError(
            "compile_cache", setting,
            f"cannot hold the compilation cache ({problem}); give a writable directory, or off",
        )  # fmt: skip
    if problem:
        print(f"warning: the compilation cache {path} cannot be used ({problem}); compiling "
              "without it (set config.compile_cache to a writable directory, or off)",
              file=sys.stderr, flush=True)  # fmt: skip
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    if path != jax.config.jax_compilation_cache_dir:
        compilation_cache.reset_cache()  # the cache is opened once per process: reopen it here
        compilation_cache.set_cache_dir(path)
    return path


def _unusable(path: str) -> str | None:
    """Why ``path`` cannot hold the cache (None: it can). Remote paths (``gs://...``) are left to
    JAX."""
    if "://" in path:
        return None
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        return f"{e.strerror or e}: {e.filename or path}"
    return None


def directory() -> str | None:
    """The cache directory in use (None: off)."""
    return jax.config.jax_compilation_cache_dir if jax.config.jax_enable_compilation_cache else None


_HITS = [0]


def _count_hits(event: str, **_) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _HITS[0] += 1


jax.monitoring.register_event_listener(_count_hits)


def hits() -> int:
    """Programs this process loaded from the persistent compilation cache so far."""
    return _HITS[0]
