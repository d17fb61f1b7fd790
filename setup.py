"""Build script (the metadata is in setup.cfg).

Plain Python by default.  The demo pages (``cgi-bin/*.py``) are copied into the
package as ``phpsess/cgi-bin/``, so ``phpsess serve`` outside a checkout has them
(phpsess/tools/demo.py).  ``PHPSESS_MYPYC=1 pip install --no-build-isolation .``
(with mypy installed) compiles the modules phpsess/compiled.py lists with mypyc,
as ``scripts/compile.sh`` does for a checkout (docs/performance.md).
"""

from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class build_py_with_demo(build_py):
    """build_py, plus the demo pages copied to ``phpsess/cgi-bin`` (not for an editable
    install: that one finds the checkout's ``cgi-bin``)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest = Path(self.build_lib) / "phpsess" / "cgi-bin"
        dest.mkdir(parents=True, exist_ok=True)
        for page in sorted((HERE / "cgi-bin").glob("*.py")):
            shutil.copy(page, dest / page.name)  # (mode too: the pages carry #! and +x for CGI)


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

setup(ext_modules=ext_modules, cmdclass={"build_py": build_py_with_demo})
