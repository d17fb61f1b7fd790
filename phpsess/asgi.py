"""``phpsess.asgi``: ``request.session`` as the PHP session in ASGI applications (Starlette,
FastAPI): ``app.add_middleware(phpsess.asgi.SessionMiddleware, ini=...)``.  The public
name of :mod:`phpsess.runtime.asgi`, where it is implemented; it imports no framework.
"""

from __future__ import annotations

from .runtime.asgi import *  # noqa: F401,F403
from .runtime.asgi import __all__  # noqa: F401
