"""Views of the example Django site: the PHP pages' login, cart and counter."""

from __future__ import annotations

import time

from django.http import HttpRequest, JsonResponse


def state(request: HttpRequest) -> JsonResponse:
    s = request.session
    return JsonResponse({"side": "django", "user": s.get("user"), "cart": s.get("cart", []), "n": s.get("n", 0)})


def index(request: HttpRequest) -> JsonResponse:
    """Who is logged in (on any side), the cart, the counter; the lock is not held."""
    request.session.start(mode="read_only")  # type: ignore[attr-defined]
    return state(request)


def login(request: HttpRequest) -> JsonResponse:
    """Log in: cycle_key() is PHP's session_regenerate_id(true) (django.contrib.auth's
    login() calls it the same way)."""
    request.session.cycle_key()
    request.session["user"] = request.GET.get("user", "guest")
    return state(request)


def logout(request: HttpRequest) -> JsonResponse:
    """Log out everywhere: flush() destroys the PHP session, the cookie is removed."""
    request.session.flush()
    return state(request)


def cart(request: HttpRequest) -> JsonResponse:
    """Add ?add=ITEM to the cart."""
    items = request.session.get("cart", [])
    request.session["cart"] = [*items, request.GET.get("add", "nothing")]
    return state(request)


def count(request: HttpRequest) -> JsonResponse:
    """One more visit, the session held ?ms=N milliseconds longer (PHP's lock: others wait)."""
    request.session["n"] = request.session.get("n", 0) + 1
    time.sleep(int(request.GET.get("ms", 0)) / 1000)
    return state(request)


def merge(request: HttpRequest) -> JsonResponse:
    """Merge mode: no lock while the view works ?ms=N; its key ?key=K is merged in at the end."""
    request.session.start(mode="merge")  # type: ignore[attr-defined]
    time.sleep(int(request.GET.get("ms", 0)) / 1000)
    request.session[request.GET.get("key", "django")] = time.time()
    return state(request)
