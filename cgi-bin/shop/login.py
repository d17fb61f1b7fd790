"""login.py: the log-in form; on success a new session id (session fixation defence).
The port of login.php."""

import phpsess

phpsess.require_once("common.py")

if SERVER["REQUEST_METHOD"] == "POST":
    check_csrf()
    user = phpsess.strval(POST.get("user", "")).strip()
    if user != "" and POST.get("password", "") == "secret":
        phpsess.session_regenerate_id(True)
        SESSION["user"] = user
        flash(f"Welcome, {user}!")
        redirect("index")
    phpsess.http_response_code(403)
    flash("Wrong user name or password.")
title = "Log in"
phpsess.include("header.py")
phpsess.echo('<form method="post" action="login', EXT, '"><input type="hidden" name="csrf" value="', h(csrf_token()), '">', "\n")
phpsess.echo('<label>User <input name="user"></label> <label>Password <input name="password" type="password"></label>', "\n")
phpsess.echo("<button>Log in</button> (password: secret)</form>\n</body></html>\n")
