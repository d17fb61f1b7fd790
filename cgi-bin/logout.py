#!/usr/bin/env python3
"""logout.py: the PHP manual's logout -- empty $_SESSION, expire the cookie, destroy.

    <?php
    session_start();
    $_SESSION = [];
    $p = session_get_cookie_params();
    setcookie(session_name(), '', time() - 42000, $p['path'], $p['domain'], $p['secure'], $p['httponly']);
    session_destroy();
"""

import time

import phpsess

phpsess.session_start()
phpsess.SESSION.replace({})
params = phpsess.session_get_cookie_params()
phpsess.setcookie(
    str(phpsess.session_name()), "", int(time.time()) - 42000,
    params["path"], params["domain"], params["secure"], params["httponly"],
)
phpsess.session_destroy()

print("<!DOCTYPE html>")
print('<html><head><meta charset="utf-8"><title>Logged out</title></head><body>')
print('<p id="status">Logged out.</p><p><a href="login.py">log in again</a></p>')
print("</body></html>")
