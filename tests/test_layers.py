"""Imports go down only (DESIGN.md §5, rule 1), checked by walking every module's AST.

cli/proxy/sdk/cluster (and each capability's ``cli.py``) -> registry -> capabilities ->
client/ and node/ core -> mpc/secure/models -> errors/config. Capabilities reach each
other only through ``protocol.py`` or their ``__init__``. Imports under
``if TYPE_CHECKING:`` are not imports at run time and are skipped; imports inside
functions count (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from misuan import registry

SRC = Path(__file__).resolve().parent.parent / "src" / "misuan"
#: every capability folder (the registry's, plus those registered only on some nodes)
CAPABILITIES = {"hosting", "inference", "psi", "benchmarks", "retrieval", "evaluation", "finetune", "tiers", "pipelines"}
TOP, REGISTRY, CAPABILITY, CORE, BASE, BOTTOM = 5, 4, 3, 2, 1, 0
_PACKAGES = {
    "cli": TOP,
    "proxy": TOP,
    "cluster": TOP,
    "client": CORE,
    "node": CORE,
    "mpc": BASE,
    "secure": BASE,
    "models": BASE,
}
_MODULES = {
    "__init__": TOP,  # the curated public API re-exports from every layer (lazily)
    "__main__": TOP,
    "sdk": TOP,
    "demo": TOP,
    "selftest": TOP,
    "registry": REGISTRY,
    "identity": BOTTOM,  # key pairs and signatures: leaf utilities config reads
    "audit_heads": BOTTOM,
    "pki": CORE,
    "errors": BOTTOM,
    "config": BOTTOM,
    "_fs": BOTTOM,
}


def layer(module: str) -> int:
    """The layer of ``misuan.<...>`` module ``module`` (dotted, without ``misuan.``)."""
    parts = module.split(".")
    if parts[0] in CAPABILITIES:
        return TOP if parts[-1] == "cli" else CAPABILITY  # a capability's CLI sub-app belongs to the CLI
    if parts[0] in _PACKAGES:
        return _PACKAGES[parts[0]]
    if parts[0] in _MODULES:
        return _MODULES[parts[0]]
    raise AssertionError(f"misuan.{module} has no layer: add it to tests/test_layers.py")


def _module_name(path: Path, src: Path = SRC) -> str:
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def imports(path: Path, src: Path = SRC) -> list[tuple[int, str]]:
    """(line, imported misuan module without ``misuan.``) for every run-time import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_lines(tree)
    mod = _module_name(path, src)
    package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    out = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.removeprefix("misuan.")) for a in node.names if a.name.startswith("misuan.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] if node.level > 1 else package
                target = ".".join([*base, node.module] if node.module else base)
            elif node.module and (node.module == "misuan" or node.module.startswith("misuan.")):
                target = node.module.removeprefix("misuan").removeprefix(".")
            else:
                continue
            if target == "":  # `from misuan import x` / `from .. import x`: x is a module or a name of the package
                out += [(node.lineno, a.name) for a in node.names if (src / a.name).exists() or (src / f"{a.name}.py").exists()]
                continue
            # `from .pkg import mod` imports pkg.mod when mod is a module
            subs = [f"{target}.{a.name}" for a in node.names if (src / target.replace(".", "/") / f"{a.name}.py").exists()]
            out += [(node.lineno, s) for s in subs] or [(node.lineno, target)]
    return out


def violations(src: Path = SRC) -> list[str]:
    bad = []
    for path in sorted(src.rglob("*.py")):
        mod = _module_name(path, src)
        me = layer(mod)
        for line, target in imports(path, src):
            if not target:
                continue
            there = layer(target)
            where = f"misuan/{path.relative_to(src)}:{line}: misuan.{mod} imports misuan.{target}"
            if there > me and not (mod == "registry" and target.split(".")[0] in CAPABILITIES and target.endswith(".cli")):
                bad.append(f"{where} (upward)")
            mine, theirs = mod.split(".")[0], target.split(".")[0]
            if me == there == CAPABILITY and mine != theirs:
                if not (target == theirs or target == f"{theirs}.protocol"):
                    bad.append(f"{where} (capabilities meet only through protocol.py or __init__)")
    return bad


def test_imports_go_down_only():
    bad = violations()
    assert not bad, "\n".join(bad)


def test_registry_lists_only_capability_folders():
    caps = registry.node_capabilities(bench=True)
    assert {c.name for c in caps} <= CAPABILITIES
    for cap in caps:
        assert (SRC / cap.name / "node.py").exists() and (SRC / cap.name / "protocol.py").exists(), cap.name
    for register in registry.CLI:
        assert register.__module__.split(".")[1] in CAPABILITIES and register.__module__.endswith(".cli")


def test_the_check_catches_an_upward_import(tmp_path):
    """The walker is not vacuous: a core module importing a capability is reported."""
    import shutil

    copy = tmp_path / "misuan"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / "node" / "reveal.py"
    target.write_text(target.read_text() + "\n\ndef _oops():\n    from ..inference import layout  # noqa\n")
    bad = violations(copy)
    assert any("misuan.node.reveal imports misuan.inference.layout (upward)" in b for b in bad), bad


@pytest.mark.parametrize("module, expected", [("node.runtimes", CORE), ("psi.cli", TOP), ("inference.specs", CAPABILITY)])
def test_layers_of_known_modules(module, expected):
    assert layer(module) == expected
