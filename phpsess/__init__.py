"""phpsess: PHP's session runtime, reproduced one for one in Python.

``import phpsess`` gives PHP's session API (``session_start``, ``SESSION``, ...);
see ``docs/porting.md``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import *  # noqa: F401,F403
from .errors import __all__ as _errors_all

__all__ = ["__version__", *_errors_all]
