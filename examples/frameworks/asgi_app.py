"""A Starlette (ASGI) application on the PHP pages' sessions: the same login, cart and
counter.  FastAPI is the same: ``app.add_middleware(SessionMiddleware, mode=...)``.

    pip install 'phpsess[asgi]' starlette uvicorn
    PHPSESS_INI=/etc/php/8.2/fpm/php.ini uvicorn asgi_app:app --port 8002

and nginx sends ``/asgi/`` there, ``*.php`` to php-fpm (docs/frameworks.md).
``request.session`` is the PHP session; the middleware waits for PHP's lock in a worker
thread, never in the event loop, and releases it when the response is sent.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from phpsess.asgi import SessionMiddleware


def mode(scope: Any) -> str:
    """The locking mode of each request: read only for the index, merge for /merge, else PHP's lock."""
    path = scope["path"]
    return "read_only" if path == "/asgi/" else "merge" if path == "/asgi/merge" else "lock"


def state(request: Request) -> JSONResponse:
    s = request.session
    return JSONResponse({"side": "asgi", "user": s.get("user"), "cart": s.get("cart", []), "n": s.get("n", 0)})


async def index(request: Request) -> JSONResponse:
    """Who is logged in (on any side), the cart, the counter."""
    return state(request)


async def login(request: Request) -> JSONResponse:
    """Log in: a new session id against fixation (PHP's session_regenerate_id(true))."""
    request.session.regenerate_id()
    request.session["user"] = request.query_params.get("user", "guest")
    return state(request)


async def logout(request: Request) -> JSONResponse:
    """Log out everywhere: the session is destroyed and its cookie removed."""
    request.session.destroy()
    return state(request)


async def cart(request: Request) -> JSONResponse:
    """Add ?add=ITEM to the cart."""
    request.session.setdefault("cart", []).append(request.query_params.get("add", "nothing"))
    return state(request)


async def count(request: Request) -> JSONResponse:
    """One more visit, the session held ?ms=N milliseconds longer (the event loop is not)."""
    request.session["n"] = request.session.get("n", 0) + 1
    await asyncio.sleep(int(request.query_params.get("ms", 0)) / 1000)
    return state(request)


async def merge(request: Request) -> JSONResponse:
    """Merge mode (see mode()): its key ?key=K is merged in at the end."""
    await asyncio.sleep(int(request.query_params.get("ms", 0)) / 1000)
    request.session[request.query_params.get("key", "asgi")] = time.time()
    return state(request)


app = Starlette(
    routes=[Route("/asgi/" + p, f) for p, f in [
        ("", index), ("login", login), ("logout", logout), ("cart", cart), ("count", count), ("merge", merge)]],
    middleware=[Middleware(SessionMiddleware, mode=mode)],  # settings: $PHPSESS_INI, else PHP's defaults
)
