"""The never-rules of the layout (docs/design.md), checked from the imports of every module under
fedjax_deep/: parsed with ``ast``, never imported, so a rule broken inside a function counts too."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).parents[1]
PACKAGE = ROOT / "fedjax_deep"


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every import in a file (relative ones resolved; ``from a
    import b`` counts as ``a.b`` too, since ``b`` may be a module)."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            out.append((node.lineno, module))
            out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return out


def _within(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


# (where the rule applies, what it forbids, what it allows despite the forbidden prefixes)
RULES = [
    ("fedjax_deep.analysis", "reads runs back with the run-file reader only",
     lambda m: (_within(m, ("fedjax_deep",)) and m != "fedjax_deep"  # the root: always run
                and not _within(m, ("fedjax_deep.analysis", "fedjax_deep.runfiles",
                                    "fedjax_deep.errors")))
     or _within(m, ("jax", "flax", "optax", "orbax", "experiments", "benchmarks"))),
    ("fedjax_deep.models", "never imports the config system",
     lambda m: _within(m, ("fedjax_deep.config",))),
    ("fedjax_deep.data", "never imports the config system",
     lambda m: _within(m, ("fedjax_deep.config",))),
    ("fedjax_deep.fl", "the round never imports the trainer, the CLI or the experiment",
     lambda m: _within(m, ("fedjax_deep.train", "fedjax_deep.cli", "fedjax_deep.experiment"))),
    ("fedjax_deep", "the library never imports a study or the benchmarks",
     lambda m: _within(m, ("experiments", "benchmarks"))),
]  # fmt: skip
MODULES = sorted(PACKAGE.rglob("*.py"))


def violations(rule) -> list[str]:
    where, what, forbidden = rule
    found = []
    for path in MODULES:
        if not _within(_module_name(path), (where,)):
            continue
        for line, module in imports(path):
            if forbidden(module):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module} ({where} {what})")
    return found


@pytest.mark.parametrize("rule", RULES, ids=[f"{r[0]}: {r[1]}" for r in RULES])
def test_never_rules(rule):
    assert any(_within(_module_name(p), (rule[0],)) for p in MODULES), f"no module in {rule[0]}"
    found = violations(rule)
    assert not found, "\n".join(found)


def test_the_checker_sees_every_kind_of_import(tmp_path):
    """Absolute, from-, relative and function-level imports are all read (a checker that misses
    one passes every rule)."""
    global ROOT
    pkg = tmp_path / "fedjax_deep" / "analysis"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "bad.py").write_text(
        "import jax.numpy as jnp\n"
        "from ..config import FIELDS\n"
        "from .. import fl\n"
        "from . import runs\n"
        "def f():\n"
        "    from fedjax_deep.models import build_model\n"
    )
    root, ROOT = ROOT, tmp_path
    try:
        got = imports(pkg / "bad.py")
    finally:
        ROOT = root
    assert (1, "jax.numpy") in got and (2, "fedjax_deep.config") in got
    assert (3, "fedjax_deep.fl") in got and (4, "fedjax_deep.analysis.runs") in got
    assert (6, "fedjax_deep.models") in got
    forbidden = RULES[0][2]
    assert [m for _, m in got if forbidden(m)] == [
        "jax.numpy", "fedjax_deep.config", "fedjax_deep.config.FIELDS", "fedjax_deep.fl",
        "fedjax_deep.models", "fedjax_deep.models.build_model"]  # fmt: skip
