"""Lazy re-exports for a package's ``__init__``: a name is imported from its module on first use
(PEP 562), so importing the package costs nothing and a study that only wants the client step never
pays for the runner's imports."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, str]):
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps each public name to the module
    that defines it (a module's own name maps to the module itself)."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(exports[name])
        value = module if module.__name__.rsplit(".", 1)[-1] == name else getattr(module, name)
        globals_ = importlib.import_module(package).__dict__
        globals_[name] = value  # later lookups skip this function
        return value

    def __dir__():
        return sorted(set(importlib.import_module(package).__dict__) | set(exports))

    return __getattr__, __dir__
