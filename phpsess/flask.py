"""``phpsess.flask``: ``flask.session`` as the PHP session
(``app.session_interface = phpsess.flask.PHPSessionInterface(...)``); the public name of
:mod:`phpsess.runtime.flask`, where it is implemented.  Flask itself is imported when a
name of this module is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .runtime.cgi import disarm as _disarm_cgi

# an entry point of its own: a CGI host does not make this process its request
_disarm_cgi()

__all__ = ["PHPSessionInterface", "FlaskSession"]

if TYPE_CHECKING:
    from .runtime.flask import FlaskSession as FlaskSession, PHPSessionInterface as PHPSessionInterface


def __getattr__(name: str) -> Any:
    """The names of :mod:`phpsess.runtime.flask`, imported (with Flask) on first use."""
    if name in __all__:
        from .runtime import flask as implementation

        return getattr(implementation, name)
    raise AttributeError(f"module 'phpsess.flask' has no attribute {name!r}")
