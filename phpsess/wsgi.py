"""``phpsess.wsgi``: PHP's session API inside any WSGI application (the public name of
:mod:`phpsess.runtime.wsgi`, where it is implemented)."""

from __future__ import annotations

from .runtime.wsgi import *  # noqa: F401,F403
from .runtime.wsgi import __all__  # noqa: F401
