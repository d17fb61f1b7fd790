"""``phpsess.django``: the Django session engine whose ``request.session`` is the PHP session
(``SESSION_ENGINE = "phpsess.django"``; optionally ``"phpsess.django.SessionMiddleware"``
in place of Django's in ``MIDDLEWARE``).  The public name of :mod:`phpsess.runtime.django`,
where it is implemented; Django itself is imported when a name of this module is first
used (Django does that when it loads the engine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .runtime.cgi import disarm as _disarm_cgi

# an entry point of its own: a CGI host does not make this process its request
_disarm_cgi()

__all__ = ["SessionStore", "SessionMiddleware", "django_config", "collect_garbage"]

if TYPE_CHECKING:
    from .runtime.django import (
        SessionMiddleware as SessionMiddleware,
        SessionStore as SessionStore,
        collect_garbage as collect_garbage,
        django_config as django_config,
    )


def __getattr__(name: str) -> Any:
    """The names of :mod:`phpsess.runtime.django`, imported (with Django) on first use."""
    if name in __all__:
        from .runtime import django as implementation

        return getattr(implementation, name)
    raise AttributeError(f"module 'phpsess.django' has no attribute {name!r}")
