<?php
// index.php: the products, each with an "add to cart" form.
require_once 'common.php';
require_login();

$title = 'Products';
include 'header.php';
echo "<table>\n";
foreach (PRODUCTS as $id => [$name, $price]) {
    echo '<tr><td>', h($name), '</td><td class="price">', money($price), '</td><td><form method="post" action="cart',
        EXT, '"><input type="hidden" name="csrf" value="', h(csrf_token()), '"><input type="hidden" name="action" ',
        'value="add"><input type="hidden" name="product" value="', h($id), '"><input name="qty" value="1" size="2">',
        "<button>Add</button></form></td></tr>\n";
}
echo "</table>\n</body></html>\n";
