"""The packages' dependencies point one way: contracts at the bottom, shared adapters beside them, then
events in (producers), the worker (streams), the read side (consumers); the command and the bench on top.
Checked on every module's imports, the ones inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from referrals.settings import PROJECT_ROOT

# package -> the packages its modules may import (besides its own)
MAY_IMPORT: dict[str, set[str]] = {
    "schemas": set(),
    "referrals": {"schemas"},
    "producers": {"schemas", "referrals"},
    "streams": {"schemas", "referrals"},
    "consumers": {"schemas", "referrals", "streams"},  # the read side reads what the worker writes
    "deploy": {"schemas", "referrals", "streams"},  # the worker supervisor knows its exit codes
    "referrals.cli": {"schemas", "referrals", "producers", "streams", "consumers", "deploy"},
}
FAUST_ONLY_IN = {"streams/app.py", "bench/faust_floor.py"}


def package_of(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).parts
    return "referrals.cli" if parts[:2] == ("referrals", "cli") else parts[0]


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def modules() -> list[Path]:
    return sorted(p for package in ("schemas", "referrals", "producers", "streams", "consumers", "deploy", "bench")
                  for p in (PROJECT_ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", [p for p in modules() if package_of(p) in MAY_IMPORT],
                         ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_a_module_imports_only_the_layers_below_it(path):
    own = package_of(path)
    first_party = {"schemas", "referrals", "producers", "streams", "consumers", "deploy", "bench", "tests"}
    wrong = sorted(name for name in imported(path) if name.split(".")[0] in first_party
                   and layer(name) not in MAY_IMPORT[own] | {own})
    assert not wrong, f"{path.relative_to(PROJECT_ROOT)} ({own}) imports {wrong}"


def layer(module: str) -> str:
    return "referrals.cli" if module == "referrals.cli" or module.startswith("referrals.cli.") else module.split(".")[0]


def test_only_the_worker_shell_imports_faust():
    found = {str(p.relative_to(PROJECT_ROOT)) for p in modules()
             if any(name == "faust" or name.startswith("faust.") for name in imported(p))}
    assert found == FAUST_ONLY_IN
