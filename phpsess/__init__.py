"""phpsess: PHP's session runtime, reproduced one for one in Python.

``import phpsess`` gives PHP's session API: ``phpsess.session_start()``,
``phpsess.SESSION`` (this request's ``$_SESSION``), ``phpsess.session_write_close()``,
``phpsess.ini_set("session.gc_maxlifetime", 3600)``... see docs/porting.md.
A CGI script that imports phpsess behaves as a PHP script under php-cgi
(:mod:`phpsess.runtime.cgi`); importing phpsess has no other effect.
"""

from __future__ import annotations

from typing import Any

from .version import __version__

from .errors import *  # noqa: F401,F403,E402
from .errors import __all__ as _errors_all  # noqa: E402
from .php import *  # noqa: F401,F403,E402
from .php import __all__ as _php_all  # noqa: E402
from .lang import *  # noqa: F401,F403,E402
from .lang import __all__ as _lang_all  # noqa: E402
from .session.userclass import *  # noqa: F401,F403,E402
from .session.userclass import __all__ as _userclass_all  # noqa: E402

from .core.phparray import PHPArray  # noqa: E402  (what PHP arrays in SESSION are: docs/types.md)

# SID is not in __all__: it exists only after session_start() (see __getattr__)
__all__ = ["__version__", "PHPArray", *_errors_all, *_php_all, *_lang_all, *_userclass_all]


def __getattr__(name: str) -> Any:
    """``phpsess.SID``: PHP's SID constant for the current request (``""`` or ``name=id``)."""
    if name == "SID":
        from .session.context import current_request

        req = current_request()
        if not req.has_session or req.session.sid_constant is None:
            raise AttributeError("SID is not defined before the first session_start()")
        return req.session.sid_constant
    raise AttributeError(f"module 'phpsess' has no attribute {name!r}")


# A CGI script that imports phpsess becomes its CGI request when it first uses it
# (runtime/cgi.py); importing phpsess anywhere else has no effect.
from .runtime.cgi import arm_if_imported_by_script as _arm_if_imported_by_script  # noqa: E402

_arm_if_imported_by_script()
