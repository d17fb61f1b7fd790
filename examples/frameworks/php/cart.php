<?php
// Add ?add=ITEM to the cart.
session_start();
$_SESSION['cart'][] = (string)($_GET['add'] ?? 'nothing');
header('Content-Type: application/json');
echo json_encode(['side' => 'php', 'cart' => $_SESSION['cart']]);
