"""The package's shape: the import-linter layering contract, no import cycles, short functions.

The layers are declared once, in ``[tool.importlinter]`` of ``pyproject.toml``, and explained
in the "Layering" section of ``docs/architecture.md``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "denoise"
MAX_LINES = 80

#: Functions longer than MAX_LINES today, with their length: a shrinking allow-list.  Split a
#: function and delete its entry; a function not listed here may not grow past MAX_LINES, and
#: a listed one may not grow past its recorded length.
LONG_FUNCTIONS: dict[str, int] = {}


def _contract_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere (top level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _function_lengths(path: Path) -> dict[str, int]:
    """``qualified name -> lines`` (``def`` line to last line) of every function in ``path``."""
    out: dict[str, int] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                out[name] = child.end_lineno - child.lineno + 1
                walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                walk(child, prefix + child.name + ".")

    walk(ast.parse(path.read_text(), str(path)), "")
    return out


def _lint_imports(config: Path) -> int:
    """Exit code of ``lint-imports`` on ``config`` (0: every contract kept); its report printed.

    Run in a subprocess: import-linter reconfigures logging in-process, which silenced the
    loggers of tests that ran after it (``caplog`` saw nothing).
    """
    pytest.importorskip("importlinter", reason="import-linter (the dev extra) is not installed")
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(config)], cwd=ROOT, capture_output=True, text=True
    )
    print(proc.stdout, proc.stderr)
    return proc.returncode


def test_import_contract_is_kept(capsys):
    code = _lint_imports(ROOT / "pyproject.toml")
    report = capsys.readouterr().out
    assert code == 0, report
    assert f"{len(_contract_config()['contracts'])} kept, 0 broken" in report


def test_import_contract_catches_an_upward_import(tmp_path, capsys):
    """The same checker fails on a contract that today's imports break (io below cli is real)."""
    config = tmp_path / "inverted.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "denoise"\n'
        '[[tool.importlinter.contracts]]\nname = "inverted"\ntype = "layers"\n'
        'layers = ["denoise.io", "denoise.cli"]\n'
    )
    assert _lint_imports(config) != 0
    assert "inverted BROKEN" in capsys.readouterr().out


def test_contract_places_every_module():
    """A new subpackage or top-level module must get its place in the layers."""
    layers = _contract_config()["contracts"][0]["layers"]
    named = {m.strip() for layer in layers for m in layer.replace(":", "|").split("|")}
    unplaced = []
    for name in _modules():
        parts = name.split(".")
        if len(parts) == 1:
            continue  # the package itself (denoise/__init__.py: the version only)
        prefixes = {".".join(parts[:k]) for k in range(2, len(parts) + 1)}
        if not prefixes & named and name != "denoise.predict":
            unplaced.append(name)
    assert not unplaced, f"modules not in [tool.importlinter] layers: {unplaced}"


def test_no_import_cycles_counting_function_level_imports():
    modules = _modules()
    graph = {name: _imported_modules(name, path, modules) for name, path in modules.items()}
    assert _cycles(graph) == []


def test_cycle_checker_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_function_longer_than_80_lines():
    too_long = {}
    lengths = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for name, n in _function_lengths(path).items():
            lengths[f"{rel}::{name}"] = n
            if n > MAX_LINES and n > LONG_FUNCTIONS.get(f"{rel}::{name}", MAX_LINES):
                too_long[f"{rel}::{name}"] = n
    assert not too_long, f"functions over {MAX_LINES} lines (split them): {too_long}"
    fixed = sorted(k for k in LONG_FUNCTIONS if lengths.get(k, 0) <= MAX_LINES)
    assert not fixed, f"no longer over {MAX_LINES} lines, delete from LONG_FUNCTIONS: {fixed}"
