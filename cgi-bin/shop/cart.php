<?php
// cart.php: the cart; POST action=add|update|remove changes it, then redirects here.
require_once 'common.php';
require_login();

$title = 'Cart';
include 'header.php';   // output already... header() below still works: output_buffering

if ($_SERVER['REQUEST_METHOD'] === 'POST') {
    check_csrf();
    $cart = cart();
    $action = $_POST['action'] ?? '';
    if ($action === 'add' && isset(PRODUCTS[$_POST['product'] ?? ''])) {
        $id = $_POST['product'];
        $cart[$id] = ($cart[$id] ?? 0) + max(1, (int)($_POST['qty'] ?? 1));   // "2" + 1 juggles to 3
        flash(PRODUCTS[$id][0] . ' added.');
    } elseif ($action === 'update') {
        foreach ((array)($_POST['qty'] ?? []) as $id => $qty) {
            if (isset($cart[$id])) {
                $cart[$id] = (int)$qty;
                if ($cart[$id] <= 0) {
                    unset($cart[$id]);
                }
            }
        }
        flash('Cart updated.');
    } elseif ($action === 'remove') {
        unset($cart[$_POST['product'] ?? '']);
        flash('Removed.');
    }
    $_SESSION['cart'] = $cart;
    redirect('cart');
}

$total = 0;
echo '<form method="post" action="cart', EXT, '"><input type="hidden" name="csrf" value="', h(csrf_token()), '">',
    '<input type="hidden" name="action" value="update">', "\n<table>\n";
foreach (cart() as $id => $qty) {
    [$name, $price] = PRODUCTS[$id];
    $total += $qty * $price;
    echo '<tr><td>', h($name), '</td><td><input name="qty[', h($id), ']" id="qty-', h($id), '" value="', $qty,
        '" size="2"></td><td>', money($qty * $price), "</td></tr>\n";
}
echo '</table>', "\n", '<p>Total: <span id="total">', money($total), '</span></p><button>Update</button></form>', "\n";
echo "</body></html>\n";
