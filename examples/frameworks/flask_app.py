"""A Flask application on the PHP pages' sessions: the same login, cart and counter.

    pip install 'phpsess[flask]' gunicorn
    PHPSESS_INI=/etc/php/8.2/fpm/php.ini gunicorn -k gthread --threads 8 -b 127.0.0.1:8001 flask_app:app

and nginx sends ``/flask/`` there, ``*.php`` to php-fpm (docs/frameworks.md).
``flask.session`` is the PHP session: no start call, the PHP pages' cookie, file and
lock.  ``$PHPSESS_INI`` names the php.ini whose ``session.*`` settings the PHP pages use.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, jsonify, request, session

from phpsess.flask import PHPSessionInterface

app = Flask(__name__)
app.session_interface = PHPSessionInterface()  # settings: $PHPSESS_INI, else PHP's defaults


def state() -> dict[str, Any]:
    return {"side": "flask", "user": session.get("user"), "cart": session.get("cart", []), "n": session.get("n", 0)}


@app.route("/flask/")
def index() -> Any:
    """Who is logged in (on any side), the cart, the counter; the lock is not held."""
    session.start(mode="read_only")  # type: ignore[attr-defined]
    return jsonify(state())


@app.route("/flask/login")
def login() -> Any:
    """Log in: a new session id against fixation (PHP's session_regenerate_id(true))."""
    session.regenerate_id()  # type: ignore[attr-defined]
    session["user"] = request.args.get("user", "guest")
    return jsonify(state())


@app.route("/flask/logout")
def logout() -> Any:
    """Log out everywhere: the session is destroyed and its cookie removed."""
    session.destroy()  # type: ignore[attr-defined]
    return jsonify(state())


@app.route("/flask/cart")
def cart() -> Any:
    """Add ?add=ITEM to the cart (a nested change: saved, as PHP saves $_SESSION)."""
    session.setdefault("cart", []).append(request.args.get("add", "nothing"))
    return jsonify(state())


@app.route("/flask/count")
def count() -> Any:
    """One more visit, the session held ?ms=N milliseconds longer (PHP's lock: others wait)."""
    session["n"] = session.get("n", 0) + 1
    time.sleep(int(request.args.get("ms", 0)) / 1000)
    return jsonify(state())


@app.route("/flask/merge")
def merge() -> Any:
    """Merge mode: no lock while the page works ?ms=N; its key ?key=K is merged in at the end."""
    session.start(mode="merge")  # type: ignore[attr-defined]
    time.sleep(int(request.args.get("ms", 0)) / 1000)
    session[request.args.get("key", "flask")] = time.time()
    return jsonify(state())
