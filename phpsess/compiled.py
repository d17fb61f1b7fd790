"""phpsess compiled with mypyc: which modules are compiled, and the class options the
compiler reads.  No I/O.

``scripts/compile.sh`` (and ``pip install .``, when a C compiler is present) compiles
:data:`COMPILED_MODULES` to C extensions with mypyc; every other module, and the
whole package when nothing was compiled, is plain Python with the same behaviour
(docs/performance.md).

Module-level names in a compiled module: mypyc keeps a ``Final`` name in a C static,
while any other module-level name, and any attribute of an imported module
(``time.monotonic``), is a dictionary lookup at each use.  So a compiled module
declares its constants and caches that are never rebound ``Final``, and binds the
module attributes its request path calls once, as ``Final`` names
(``_monotonic: Final = time.monotonic``) -- except what tests replace with
``monkeypatch`` (``os.pread``, ``os.pwrite``, ``flock.try_lock``, the codec's switches):
a compiled caller would not see the replacement.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable, Literal, TypeVar, Union

__all__ = ["COMPILED_MODULES", "IntOrFalse", "mypyc_attr", "compiled_modules", "build_name"]

#: the request path of a pool worker, in dependency order (fastcodec: the codec's
#: compiled path, which codec.py uses only when it is compiled).  Not runtime.output:
#: its OutputProxy (an io.TextIOBase), as a mypyc class, would share its ABC's registry
#: (isinstance(sys.stdout, OutputProxy) would be true); lazydata's SessionData is a
#: MutableMapping by registration for that reason, not by inheritance
COMPILED_MODULES: tuple[str, ...] = (
    "phpsess.core.state",
    "phpsess.core.zend",
    "phpsess.core.ids",
    "phpsess.core.http",
    "phpsess.core.superglobals",
    "phpsess.core.fastcodec",
    "phpsess.core.formats",
    "phpsess.core.engine",
    "phpsess.core.lazydata",
    "phpsess.core.telemetry",
    "phpsess.storage.registry",
    "phpsess.storage.base",
    "phpsess.storage.files",
    "phpsess.session.settings",
    "phpsess.session.obuffer",
    "phpsess.session.session",
    "phpsess.session.request",
    "phpsess.session.context",
    "phpsess.php",
    "phpsess.runtime.sapi",
    "phpsess.runtime.fcgi",
    "phpsess.runtime.fcgi_conn",
    "phpsess.runtime.scoreboard",
    "phpsess.runtime.metering",
)

_T = TypeVar("_T")

#: an int, or False (PHP's "int|false"), for what the PHP-named functions return.
#: Spelled ``int | bool``, mypy would simplify it to ``int`` (bool is an int) and
#: compiled code would return False as 0.  Compiled, a function must return False
#: literally (``return False``): a value of this type passed on from another
#: compiled call comes back as 0 (mypyc), so Session's methods return ``int | None``
#: and php.py turns None into False.
IntOrFalse = Union[int, Literal[False]]

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr
else:

    def mypyc_attr(*flags: str, **options: Any) -> Callable[[_T], _T]:
        """mypy_extensions.mypyc_attr when it is not installed: read by the compiler only."""
        return lambda cls: cls


def compiled_modules() -> list[str]:
    """The modules of :data:`COMPILED_MODULES` that this copy of phpsess runs compiled."""
    out = []
    for name in COMPILED_MODULES:
        path = getattr(importlib.import_module(name), "__file__", None) or ""
        if not path.endswith(".py"):
            out.append(name)
    return out


def build_name() -> str:
    """Which build this is, for ``phpsess --version`` and the pools' start-up line:
    ``"compiled (mypyc, 24 of 24 modules)"``, or ``"plain Python"``."""
    n = len(compiled_modules())
    if n == 0:
        return "plain Python"
    return f"compiled (mypyc, {n} of {len(COMPILED_MODULES)} modules)"
