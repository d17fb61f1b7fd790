"""index.py: the products, each with an "add to cart" form. The port of index.php."""

import phpsess

phpsess.require_once("common.py")
require_login()

title = "Products"
phpsess.include("header.py")
phpsess.echo("<table>\n")
for id, (name, price) in PRODUCTS.items():
    phpsess.echo('<tr><td>', h(name), '</td><td class="price">', money(price), '</td><td><form method="post" action="cart',
                 EXT, '"><input type="hidden" name="csrf" value="', h(csrf_token()), '"><input type="hidden" name="action" ',
                 'value="add"><input type="hidden" name="product" value="', h(id), '"><input name="qty" value="1" size="2">',
                 "<button>Add</button></form></td></tr>\n")
phpsess.echo("</table>\n</body></html>\n")
