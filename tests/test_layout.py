"""The folders are the architecture: each package imports only what its docstring says it may, no two
packages import each other, production code never imports the offline models, modules stay small."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["spec", "stores", "intake", "train", "evaluate", "scheduling", "ledger", "publish", "pipeline", "tiny",
            "registry", "serve", "tenants"]
CORE = {"lora_tasks", "lora_tasks.errors", "lora_tasks.settings", "lora_tasks.gpu_types", "lora_tasks.cli",
        "lora_tasks.digests"}
UNITS = {"core", *PACKAGES, "data_checks", "lora_airflow"}
MAX_LINES = 400


def module_name(path: Path) -> str:
    base = ROOT / "plugins" if path.is_relative_to(ROOT / "plugins") else ROOT
    return ".".join(path.relative_to(base).with_suffix("").parts).removesuffix(".__init__")


def unit(module: str) -> str | None:
    """The package a first-party module belongs to ('core' for lora_tasks' top-level modules)."""
    parts = module.split(".")
    if module in CORE:
        return "core"
    if parts[0] == "lora_tasks" and len(parts) > 1 and parts[1] in PACKAGES:
        return parts[1]
    return parts[0] if parts[0] in {"data_checks", "lora_airflow"} else None


def sources() -> dict[str, Path]:
    paths = [*(ROOT / "lora_tasks").rglob("*.py"), *(ROOT / "data_checks").rglob("*.py"),
             *(ROOT / "plugins" / "lora_airflow").rglob("*.py")]
    return {module_name(p): p for p in paths}


def imports(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside a function (lazy imports count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def edges() -> dict[tuple[str, str], list[str]]:
    """(importer unit, imported unit) -> the importing modules, first-party only, self-edges left out."""
    found: dict[tuple[str, str], list[str]] = {}
    for name, path in sources().items():
        for imported in imports(path):
            source, target = unit(name), unit(imported)
            if source and target and source != target:
                found.setdefault((source, target), []).append(f"{name} -> {imported}")
    return found


def declared(package: str) -> set[str]:
    """The units a package's docstring says it may import ('May import: core, spec.')."""
    init = {"data_checks": ROOT / "data_checks", "lora_airflow": ROOT / "plugins" / "lora_airflow"}.get(
        package, ROOT / "lora_tasks" / package) / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    match = re.search(r"May import: (.*?)(?:\.\s|\.$)", doc, re.S)
    assert match, f"{init.relative_to(ROOT)}: the docstring does not say what the package may import"
    words = set(re.findall(r"[a-z_]+", match.group(1)))
    if "lora_tasks" in words:
        words |= {"core", *PACKAGES} - {"tiny"}
    return words & UNITS


@pytest.mark.parametrize("package", [*PACKAGES, "data_checks", "lora_airflow"])
def test_each_package_imports_only_what_it_declares(package: str) -> None:
    allowed = declared(package)
    wrong = {target: where for (source, target), where in edges().items() if source == package
             and target not in allowed and not (package == "lora_airflow" and target == "tiny")}
    assert not wrong, f"{package} may import only {sorted(allowed)}, but imports {wrong}"


def test_core_modules_import_only_each_other() -> None:
    wrong = {target: where for (source, target), where in edges().items() if source == "core"}
    assert not wrong, wrong


def test_no_two_packages_import_each_other() -> None:
    graph: dict[str, set[str]] = {}
    for source, target in edges():
        graph.setdefault(source, set()).add(target)

    def cycle_from(start: str, node: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return (*seen, nxt)
            if nxt not in seen:
                found = cycle_from(start, nxt, (*seen, nxt))
                if found:
                    return found
        return None

    cycles = [c for c in (cycle_from(u, u, (u,)) for u in sorted(graph)) if c]
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)


def test_production_code_never_imports_the_offline_models() -> None:
    users = [where for (source, target), where in edges().items() if target == "tiny"]
    assert [w for group in users for w in group if not w.startswith("lora_airflow.local_stack ")] == []


def test_lora_tasks_never_imports_airflow() -> None:
    wrong = [f"{name} -> {imported}" for name, path in sources().items() if name.startswith("lora_tasks")
             for imported in imports(path) if imported.split(".")[0] in {"airflow", "lora_airflow"}]
    assert not wrong, wrong


def test_importing_every_lora_tasks_module_loads_no_airflow() -> None:
    code = ("import importlib, pkgutil, sys, lora_tasks\n"
            "for m in pkgutil.walk_packages(lora_tasks.__path__, 'lora_tasks.'): importlib.import_module(m.name)\n"
            "import data_checks, data_checks.dataset_suite\n"
            "print(len(sys.modules), sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split(" ", 1)[1].strip() == "[]", result.stdout


@pytest.mark.parametrize("path", sorted((ROOT / "lora_tasks").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines; split it by what its parts do"


def test_tests_mirror_the_packages() -> None:
    for package in PACKAGES:
        assert list((ROOT / "tests" / "lora_tasks" / package).glob("test_*.py")), f"no tests for lora_tasks.{package}"
    assert list((ROOT / "tests" / "data_checks").glob("test_*.py"))
    assert list((ROOT / "tests" / "lora_airflow").glob("test_*.py"))
