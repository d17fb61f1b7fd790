"""header.py: the top of every page, included by the page; uses its ``title``."""

phpsess.echo("<!DOCTYPE html>\n")
phpsess.echo('<html><head><meta charset="utf-8"><title>Shop: ', h(title), "</title></head><body>\n")
phpsess.echo('<nav><a href="index', EXT, '">Products</a> | <a href="cart', EXT, '">Cart (<span id="count">',
             sum(cart().values()), '</span>)</a>')
if "user" in SESSION:
    phpsess.echo(' | <span id="user">', h(SESSION["user"]), '</span> <form method="post" action="logout', EXT,
                 '"><input type="hidden" name="csrf" value="', h(csrf_token()), '"><button>Log out</button></form>')
phpsess.echo("</nav>\n")
for message in take_flashes():
    phpsess.echo('<p class="flash">', h(message), "</p>\n")
