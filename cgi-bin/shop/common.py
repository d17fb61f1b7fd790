"""common.py: what every shop page includes first (the port of common.php).
Starts the session; CSRF token, flash messages, the cart, redirects.

Included with ``phpsess.require_once("common.py")``, it runs at every request in the
page's globals, as PHP's require_once does (an ``import`` would run it once per worker).
"""

import hmac
import secrets

import phpsess
from phpsess import POST, SERVER, SESSION

PRODUCTS = {
    "tea": ("Green tea", 450),  # name, price in cents
    "mug": ("Mug", 900),
    "pot": ("Tea pot", 2500),
}
EXT = ".py"

phpsess.session_start()


def h(s):
    """htmlspecialchars($s, ENT_QUOTES)"""
    return (phpsess.strval(s).replace("&", "&amp;").replace('"', "&quot;").replace("'", "&#039;")
            .replace("<", "&lt;").replace(">", "&gt;"))


def csrf_token():
    if "csrf" not in SESSION:
        SESSION["csrf"] = secrets.token_hex(16)
    return SESSION["csrf"]


def check_csrf():
    sent = phpsess.strval(POST.get("csrf", ""))
    if SERVER["REQUEST_METHOD"] != "POST" or not hmac.compare_digest(phpsess.strval(SESSION.get("csrf", "")), sent):
        phpsess.http_response_code(403)
        phpsess.die("Invalid CSRF token")


def values(array):
    """A PHP array's values in order (``foreach ($a as $v)``): a PHPArray iterates its
    keys, as a dict does."""
    if array is None:
        return []
    return list(array.values()) if hasattr(array, "values") else list(array)


def flash(message):
    SESSION["flash"] = [*values(SESSION.get("flash")), message]  # $_SESSION['flash'][] = $message


def take_flashes():
    return values(SESSION.pop("flash", None))


def redirect(page):
    phpsess.header(f"Location: {page}{EXT}", True, 303)
    phpsess.exit()


def require_login():
    if "user" not in SESSION:
        flash("Please log in.")
        redirect("login")


def cart():
    # PHP's empty array is [] (a list); a filled cart is {"tea": 2, ...}
    return dict(SESSION.get("cart") or {})


def money(cents):
    return f"{cents / 100:,.2f}"
