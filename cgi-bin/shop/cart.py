"""cart.py: the cart; POST action=add|update|remove changes it, then redirects here.
The port of cart.php."""

import phpsess

phpsess.require_once("common.py")
require_login()

title = "Cart"
phpsess.include("header.py")  # output already... header() below still works: output_buffering

if SERVER["REQUEST_METHOD"] == "POST":
    check_csrf()
    items = cart()
    action = POST.get("action", "")
    if action == "add" and POST.get("product", "") in PRODUCTS:
        id = POST["product"]
        items[id] = items.get(id, 0) + max(1, phpsess.intval(POST.get("qty", 1)))  # PHP: "2" + 1 is 3
        flash(PRODUCTS[id][0] + " added.")
    elif action == "update":
        qtys = POST.get("qty", {})
        for id, qty in (qtys.items() if isinstance(qtys, dict) else enumerate(qtys)):
            if id in items:
                items[id] = phpsess.intval(qty)
                if items[id] <= 0:
                    del items[id]
        flash("Cart updated.")
    elif action == "remove":
        items.pop(POST.get("product", ""), None)
        flash("Removed.")
    SESSION["cart"] = items
    redirect("cart")

total = 0
phpsess.echo('<form method="post" action="cart', EXT, '"><input type="hidden" name="csrf" value="', h(csrf_token()), '">',
             '<input type="hidden" name="action" value="update">', "\n<table>\n")
for id, qty in cart().items():
    name, price = PRODUCTS[id]
    total += qty * price
    phpsess.echo('<tr><td>', h(name), '</td><td><input name="qty[', h(id), ']" id="qty-', h(id), '" value="', qty,
                 '" size="2"></td><td>', money(qty * price), "</td></tr>\n")
phpsess.echo('</table>', "\n", '<p>Total: <span id="total">', money(total), '</span></p><button>Update</button></form>', "\n")
phpsess.echo("</body></html>\n")
