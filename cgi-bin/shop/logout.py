"""logout.py: POST only (with the CSRF token): the data dropped, the old session deleted
and a new id sent, so the "Logged out." flash survives to the next page.
The port of logout.php."""

import phpsess

phpsess.require_once("common.py")
check_csrf()

SESSION.replace({})
phpsess.session_regenerate_id(True)
flash("Logged out.")
redirect("login")
