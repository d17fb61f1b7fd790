#!/usr/bin/env python3
"""login.py: log in, moving the session to a new id (session fixation defence).

GET shows the form (or who is logged in); POST user=...&password=... checks the
password and, on success, calls session_regenerate_id(true) -- new id, new cookie,
old session file deleted -- then redirects back here (303, Post/Redirect/Get).
The demo password is "secret".
"""

import html

import phpsess
from phpsess import POST, SERVER, SESSION

phpsess.session_start()

if SERVER.get("REQUEST_METHOD") == "POST":
    user = str(POST.get("user", "")).strip()
    if user and POST.get("password") == "secret":
        phpsess.session_regenerate_id(True)
        SESSION["user"] = user
        SESSION["logins"] = SESSION.get("logins", 0) + 1
        phpsess.header("Location: login.py", True, 303)
        raise SystemExit  # PHP: exit;
    phpsess.http_response_code(403)
    SESSION["failed"] = SESSION.get("failed", 0) + 1

print("<!DOCTYPE html>")
print('<html><head><meta charset="utf-8"><title>Login</title></head><body>')
if "user" in SESSION:
    print(f"<p>Logged in as <b id=\"user\">{html.escape(str(SESSION['user']))}</b>.</p>")
    print('<p><a href="counter.py">counter</a> | <a href="logout.py">log out</a></p>')
else:
    if SERVER.get("REQUEST_METHOD") == "POST":
        print('<p id="error">Wrong user name or password.</p>')
    print('<form method="post" action="login.py">')
    print('  <label>User <input name="user"></label>')
    print('  <label>Password <input name="password" type="password"></label>')
    print('  <button>Log in</button> (password: secret)')
    print("</form>")
print("</body></html>")
