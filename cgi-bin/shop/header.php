<?php
// header.php: the top of every page, included by the page; uses its $title.
echo "<!DOCTYPE html>\n";
echo '<html><head><meta charset="utf-8"><title>Shop: ', h($title), "</title></head><body>\n";
echo '<nav><a href="index', EXT, '">Products</a> | <a href="cart', EXT, '">Cart (<span id="count">',
    array_sum(cart()), '</span>)</a>';
if (isset($_SESSION['user'])) {
    echo ' | <span id="user">', h($_SESSION['user']), '</span> <form method="post" action="logout', EXT,
        '"><input type="hidden" name="csrf" value="', h(csrf_token()), '"><button>Log out</button></form>';
}
echo "</nav>\n";
foreach (take_flashes() as $message) {
    echo '<p class="flash">', h($message), "</p>\n";
}
