"""setup.py's choice of build: compiled by default when it can be, plain for an editable
install or with PHPSESS_MYPYC=0, an error with PHPSESS_MYPYC=1 where it cannot be.  Reads
setup.py without running setuptools."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SETUP = Path(__file__).resolve().parent.parent / "setup.py"


def load_setup() -> ModuleType:
    spec = importlib.util.spec_from_file_location("phpsess_setup", SETUP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # __name__ is not "__main__": setup() does not run
    return module


def test_a_wheel_is_compiled_by_default_when_it_can_be() -> None:
    s = load_setup()
    assert s.compile_wanted(["setup.py", "bdist_wheel"], {}, lambda: None) == (True, "mypyc")


def test_plain_when_it_cannot_be_and_says_why() -> None:
    s = load_setup()
    assert s.compile_wanted(["setup.py", "bdist_wheel"], {}, lambda: "no C compiler") == (False, "no C compiler")
    with pytest.raises(RuntimeError, match="PHPSESS_MYPYC=1.*no C compiler"):
        s.compile_wanted(["setup.py", "bdist_wheel"], {"PHPSESS_MYPYC": "1"}, lambda: "no C compiler")


def test_editable_installs_and_phpsess_mypyc_0_stay_plain() -> None:
    s = load_setup()
    assert s.compile_wanted(["setup.py", "editable_wheel"], {}, lambda: None)[0] is False
    assert s.compile_wanted(["setup.py", "develop"], {}, lambda: None)[0] is False
    assert s.compile_wanted(["setup.py", "bdist_wheel"], {"PHPSESS_MYPYC": "0"}, lambda: None)[0] is False
    assert s.compile_wanted(["setup.py", "editable_wheel"], {"PHPSESS_MYPYC": "1"}, lambda: None)[0] is True


def test_the_compiled_sources_are_the_listed_modules() -> None:
    from phpsess.compiled import COMPILED_MODULES

    s = load_setup()
    assert s.compiled_sources() == [m.replace(".", "/") + ".py" for m in COMPILED_MODULES]
    assert s.can_compile() in (None, "no C compiler (apt-get install gcc)",
                               "no Python headers (apt-get install python3-dev)", "mypy (mypyc) is not installed")
