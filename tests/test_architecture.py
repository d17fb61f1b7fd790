"""The package's shape, checked: no import cycles among phpsess modules, arrows that point
down the layers, and core modules that do no I/O (docs/architecture.md). Reads the sources."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "phpsess"

#: layer of each top-level part of the package; a module may import its own layer or lower ones
LAYERS: dict[str, int] = {
    "errors": 0,
    "compiled": 0,
    "version": 0,
    "core": 1,
    "storage": 2,
    "session": 3,
    "php": 4,
    "runtime": 5,
    "tools": 6,
    # the public entry points on top: phpsess, phpsess.wsgi, the framework integrations
    # (phpsess.django, phpsess.flask, phpsess.asgi), python -m phpsess
    "__init__": 7,
    "__main__": 7,
    "wsgi": 7,
    "django": 7,
    "flask": 7,
    "asgi": 7,
}

#: what a pure (core) module may not import: files, sockets, processes, the clock, randomness,
#: the environment, logging (a caller's callback says where diagnostics go)
IMPURE = {
    "os", "io", "socket", "select", "selectors", "signal", "subprocess", "fcntl", "mmap", "time",
    "random", "pathlib", "shutil", "tempfile", "atexit", "ctypes", "logging", "threading",
    "multiprocessing", "psutil", "redis", "flup", "fasteners", "urllib.request", "http.client",
}
#: allowed exceptions, each with its reason
IMPURE_ALLOWED = {
    ("phpsess.core.ids", "secrets"): "the default of create_id's random_bytes argument",
    ("phpsess.core.codec", "threading"): "a thread-local guard against endless recursion in == of cyclic values",
    ("phpsess.core.fpmlog", "time"): "formats the timestamps it is given in local time, as php-fpm's logs "
    "(strftime/localtime); the clock is read by the caller",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports_of(name: str) -> tuple[set[str], set[str]]:
    """(phpsess modules, other top-level modules) that ``name`` imports anywhere in its
    source, TYPE_CHECKING blocks and function bodies included."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    ours: set[str] = set()
    others: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                (ours if alias.name.startswith("phpsess") else others).add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("phpsess"):
                others.add(target)
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                ours.add(sub if sub in MODULES else target)
    ours.discard(name)
    return {m for m in ours if m in MODULES}, others


GRAPH = {name: imports_of(name)[0] for name in MODULES}


def layer(name: str) -> int:
    parts = name.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    return LAYERS[key]


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer() -> None:
    for name in MODULES:
        layer(name)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    assert find_cycles(GRAPH) == []


def test_imports_point_down_the_layers() -> None:
    upward = [
        f"{name} (layer {layer(name)}) imports {dep} (layer {layer(dep)})"
        for name, deps in GRAPH.items()
        for dep in deps
        if layer(dep) > layer(name)
    ]
    assert upward == []


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("phpsess.core")))
def test_core_modules_do_no_io(name: str) -> None:
    _, others = imports_of(name)
    bad = sorted(
        m for m in others
        if (m in IMPURE or m.split(".")[0] in IMPURE) and (name, m) not in IMPURE_ALLOWED
    )
    assert bad == [], f"{name} imports {bad}"
    tree = ast.parse(MODULES[name].read_text())
    calls = [
        n.lineno for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("open", "print", "input")
    ]
    assert calls == [], f"{name} calls open/print/input at lines {calls}"


def test_the_package_type_checks_strictly() -> None:
    """Type hints throughout: ``mypy --strict`` (setup.cfg) finds nothing in phpsess/."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", str(PKG)], capture_output=True, text=True,
        cwd=PKG.parent, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
