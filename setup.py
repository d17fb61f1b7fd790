"""Build script (the metadata is in setup.cfg).

Plain Python by default.  ``PHPSESS_MYPYC=1 pip install --no-build-isolation .``
(with mypy installed) compiles the modules phpsess/compiled.py lists with mypyc,
as ``scripts/compile.sh`` does for a checkout (docs/performance.md).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from setuptools import setup


def compiled_sources() -> list[str]:
    """The source files of ``phpsess.compiled.COMPILED_MODULES`` (read, not imported)."""
    tree = ast.parse(Path(__file__).with_name("phpsess").joinpath("compiled.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "COMPILED_MODULES":
            return [elt.value.replace(".", "/") + ".py" for elt in node.value.elts]  # type: ignore[attr-defined]
    raise RuntimeError("phpsess/compiled.py: COMPILED_MODULES not found")


ext_modules = []
if os.environ.get("PHPSESS_MYPYC") == "1":
    from mypyc.build import mypycify

    ext_modules = mypycify(compiled_sources(), opt_level="3")

setup(ext_modules=ext_modules)
