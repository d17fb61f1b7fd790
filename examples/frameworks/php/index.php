<?php
// Who is logged in, the cart, the counter: what every side of the site shares.
session_start(['read_and_close' => true]);
header('Content-Type: application/json');
echo json_encode(['side' => 'php', 'user' => $_SESSION['user'] ?? null,
                  'cart' => $_SESSION['cart'] ?? [], 'n' => $_SESSION['n'] ?? 0]);
