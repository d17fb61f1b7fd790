"""Build script (the metadata is in setup.cfg).

Fast by default: ``pip install .`` compiles the modules phpsess/compiled.py lists with
mypyc when it can (mypy is a build requirement; a C compiler and the Python headers must
be installed), and installs plain Python otherwise, with the same behaviour
(docs/performance.md).  ``PHPSESS_MYPYC=1`` requires the compiled build (the install
fails without a compiler), ``PHPSESS_MYPYC=0`` never compiles.  An editable install
(``pip install -e .``) stays plain Python: an extension module next to its source would
shadow later edits of it (``scripts/compile.sh`` builds a compiled copy of a checkout).
``phpsess --version`` says which build is installed.
The demo pages (``cgi-bin/*.py``) are copied into the package as ``phpsess/cgi-bin/``,
so ``phpsess serve`` outside a checkout has them (phpsess/tools/demo.py).
"""

from __future__ import annotations

import ast
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Callable, Mapping, Sequence

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

EDITABLE_COMMANDS = frozenset({"develop", "editable_wheel"})


def compiled_sources() -> list[str]:
    """The source files of ``phpsess.compiled.COMPILED_MODULES`` (read, not imported)."""
    tree = ast.parse(Path(__file__).with_name("phpsess").joinpath("compiled.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "COMPILED_MODULES":
            return [elt.value.replace(".", "/") + ".py" for elt in node.value.elts]  # type: ignore[attr-defined]
    raise RuntimeError("phpsess/compiled.py: COMPILED_MODULES not found")


def can_compile() -> str | None:
    """Why the compiled build cannot be made here, or None when it can."""
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypy (mypyc) is not installed"
    cc = os.environ.get("CC", "gcc").split()[0] if os.environ.get("CC") else "gcc"
    if shutil.which(cc) is None and shutil.which("cc") is None:
        return "no C compiler (apt-get install gcc)"
    if not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
        return "no Python headers (apt-get install python3-dev)"
    return None


def compile_wanted(argv: Sequence[str], environ: Mapping[str, str],
                   probe: Callable[[], str | None] = can_compile) -> tuple[bool, str]:
    """Whether this build compiles, and why (``PHPSESS_MYPYC``, editable or not, the probe).

    :raises RuntimeError: ``PHPSESS_MYPYC=1`` where the compiled build cannot be made.
    """
    flag = environ.get("PHPSESS_MYPYC", "").strip()
    if flag == "0":
        return False, "PHPSESS_MYPYC=0"
    if flag != "1" and EDITABLE_COMMANDS & set(argv):
        return False, "an editable install stays plain Python"
    problem = probe()
    if problem is None:
        return True, "mypyc"
    if flag == "1":
        raise RuntimeError(f"PHPSESS_MYPYC=1, but the compiled build cannot be made: {problem}")
    return False, problem


def main() -> None:
    """Run setuptools, with the compiled modules when :func:`compile_wanted` says so."""
    ext_modules = []
    wanted, why = compile_wanted(sys.argv, os.environ)
    if wanted:
        from mypyc.build import mypycify

        ext_modules = mypycify(compiled_sources(), opt_level="3")
        print("phpsess: building the compiled modules with mypyc", file=sys.stderr)
    else:
        print(f"phpsess: plain Python build ({why})", file=sys.stderr)
    setup(ext_modules=ext_modules, cmdclass={"build_py": build_py_with_demo})


if __name__ == "__main__":
    main()
