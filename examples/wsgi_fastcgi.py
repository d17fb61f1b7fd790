"""A WSGI application with PHP's sessions, served over FastCGI by flup6 behind nginx.

    pip install 'phpsess[flup]'
    python examples/wsgi_fastcgi.py /run/phpsess/app.sock /var/lib/php/sessions

nginx:  location / { include fastcgi_params; fastcgi_pass unix:/run/phpsess/app.sock; }

flup6's WSGIServer speaks FastCGI and runs the application in threads;
phpsess.wsgi.SessionMiddleware gives each call its own request, so
phpsess.session_start() and phpsess.SESSION work in the view, and the
session is PHP's: the same cookie, file and lock as the PHP pages beside it.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Iterable

import phpsess
from phpsess.wsgi import SessionMiddleware


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Count this visitor's requests in $_SESSION['n'] (what a PHP page beside it sees too)."""
    phpsess.session_start()
    phpsess.SESSION["n"] = phpsess.SESSION.get("n", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [f"n = {phpsess.SESSION['n']}\n".encode()]


def main(argv: list[str]) -> None:
    """``python wsgi_fastcgi.py SOCKET [SAVE_PATH]``: serve until SIGTERM/SIGINT."""
    from flup.server.fcgi import WSGIServer

    socket_path = argv[1] if len(argv) > 1 else "/run/phpsess/app.sock"
    ini = {"save_path": argv[2]} if len(argv) > 2 else None
    WSGIServer(SessionMiddleware(app, ini), bindAddress=socket_path, umask=0o117).run()


if __name__ == "__main__":
    main(sys.argv)
