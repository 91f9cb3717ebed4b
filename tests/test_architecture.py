"""The import rules of docs/ARCHITECTURE.md, checked on every module's imports (function-level too)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "poolbench"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("poolbench"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("poolbench"))
    return found


MODULES = {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}

# the bottom layer: module -> the only poolbench modules it may import
ONLY = {
    "poolbench.errors": set(),
    "poolbench.whitening": set(),
    "poolbench.lookahead": set(),
    "poolbench.parsed_yaml": set(),
    "poolbench.allocator": set(),
    "poolbench.environment": {"poolbench.allocator"},
}

# module prefix -> poolbench modules it must never import
FORBIDDEN = {
    "poolbench.pools": ["poolbench.model", "poolbench.config", "poolbench.data", "poolbench.train",
                        "poolbench.experiment", "poolbench.sweep", "poolbench.cli"],
    "poolbench.model": ["poolbench.data", "poolbench.train", "poolbench.experiment", "poolbench.sweep",
                        "poolbench.cli"],
    "poolbench.data": ["poolbench.model", "poolbench.train", "poolbench.experiment", "poolbench.sweep",
                       "poolbench.cli", "poolbench.runtime"],
    "poolbench.sweep": ["poolbench.model", "poolbench.train", "poolbench.experiment", "poolbench.cli",
                        "poolbench.runtime", "poolbench.data"],
    "poolbench.results": ["poolbench.config", "poolbench.data", "poolbench.model", "poolbench.sweep"],
    "poolbench.report": ["poolbench.config", "poolbench.data", "poolbench.model", "poolbench.sweep"],
}


@pytest.mark.parametrize("prefix", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_higher_ones(prefix):
    assert any(name.startswith(prefix) for name in MODULES), f"no module {prefix}"
    for name, imported in MODULES.items():
        if not (name == prefix or name.startswith(prefix + ".")):
            continue
        bad = sorted(i for i in imported for f in FORBIDDEN[prefix]
                     if (i == f or i.startswith(f if f.endswith(".") else f + ".")) and not i.startswith(prefix))
        assert not bad, f"{name} imports {bad}"


@pytest.mark.parametrize("module", sorted(ONLY))
def test_the_bottom_layer_imports_only_what_it_is_allowed(module):
    allowed = ONLY[module]
    bad = sorted(name for name in MODULES[module] if name != "poolbench"  # `from poolbench import x` names x
                 and not any(name == a or name.startswith(a + ".") for a in allowed))  # x or a name from x
    assert not bad, f"{module} imports {bad}"


def test_only_the_cli_imports_the_experiment_and_the_sweep_callback():
    for name, imported in MODULES.items():
        if name in ("poolbench.cli", "poolbench.api"):  # the two front doors (the API runs no sweep callback)
            continue
        assert "poolbench.experiment" not in imported or name.startswith("poolbench.experiment"), name
        assert "poolbench.sweep.callback" not in imported or name.startswith("poolbench.sweep"), name
