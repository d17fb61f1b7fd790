"""phpsess.compiled: the modules scripts/compile.sh compiles with mypyc, and the
constructs mypyc would silently change in them (checked on the sources, so the plain
test run guards the compiled build too).  With ``PHPSESS_EXPECT_COMPILED=1`` (the
compiled pass of scripts/test.sh) every listed module must really be compiled."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

import phpsess
from phpsess.compiled import COMPILED_MODULES, compiled_modules

PKG = Path(phpsess.__file__).resolve().parent


def source(module: str) -> tuple[Path, ast.Module]:
    path = PKG.parent / (module.replace(".", "/") + ".py")
    return path, ast.parse(path.read_text(), str(path))


def test_every_listed_module_exists() -> None:
    for module in COMPILED_MODULES:
        assert source(module)[0].is_file(), module


def test_the_pass_runs_the_build_it_says() -> None:
    """The compiled pass runs every listed module compiled; the plain pass none (an
    extension module left in the checkout would shadow edits of its source)."""
    if os.environ.get("PHPSESS_EXPECT_COMPILED") == "1":
        assert compiled_modules() == list(COMPILED_MODULES)
    else:
        assert compiled_modules() == []


def test_version_and_start_line_say_which_build(capsys: pytest.CaptureFixture[str]) -> None:
    """``phpsess --version`` (and the pool's start-up line) say whether the modules run compiled."""
    from phpsess.compiled import build_name
    from phpsess.tools.cli import main

    expected = (f"compiled (mypyc, {len(COMPILED_MODULES)} of {len(COMPILED_MODULES)} modules)"
                if os.environ.get("PHPSESS_EXPECT_COMPILED") == "1" else "plain Python")
    assert build_name() == expected
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip().endswith(f", {expected}")


@pytest.mark.parametrize("module", COMPILED_MODULES)
def test_no_raise_from_in_a_compiled_module(module: str) -> None:
    """mypyc ignores ``raise X from Y``: the cause would be lost; pass ``cause=`` (errors.py)."""
    path, tree = source(module)
    bad = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Raise) and n.cause is not None]
    assert bad == [], f"{path}: raise ... from at lines {bad}"


def _union_members(node: ast.AST) -> set[str]:
    """The plain names a union annotation (``a | b``, ``Union[a, b]``) joins."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _union_members(node.left) | _union_members(node.right)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Union":
        elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        return set().union(*(_union_members(e) for e in elts))
    return {node.id} if isinstance(node, ast.Name) else set()


@pytest.mark.parametrize("module", COMPILED_MODULES)
def test_no_int_or_bool_annotation_in_a_compiled_module(module: str) -> None:
    """mypy simplifies ``int | bool`` to int: compiled, False would become 0 (use IntOrFalse)."""
    path, tree = source(module)
    bad = []
    for n in ast.walk(tree):
        ann = None
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            ann = n.returns
        elif isinstance(n, (ast.arg, ast.AnnAssign)):
            ann = n.annotation
        if ann is not None:
            if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
                ann = ast.parse(ann.value, mode="eval").body
            if any({"int", "bool"} <= _union_members(part) for part in ast.walk(ann)):
                bad.append(n.lineno)
    assert bad == [], f"{path}: int and bool in one annotation at lines {bad}"


@pytest.mark.parametrize("module", COMPILED_MODULES)
def test_no_conditional_expression_mixes_false_with_a_value(module: str) -> None:
    """``n if ok else False`` is typed int when n is: compiled, the False becomes 0."""
    path, tree = source(module)
    bad = []
    for n in ast.walk(tree):
        if isinstance(n, ast.IfExp):
            for side in (n.body, n.orelse):
                if isinstance(side, ast.Constant) and isinstance(side.value, bool):
                    other = n.orelse if side is n.body else n.body
                    if not (isinstance(other, ast.Constant) and isinstance(other.value, bool)):
                        bad.append(n.lineno)
    assert bad == [], f"{path}: conditional expression with a bool constant and another value at lines {bad}"
