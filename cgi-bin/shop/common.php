<?php
// common.php: what every shop page includes first (its port: common.py).
// Starts the session; CSRF token, flash messages, the cart, redirects.

const PRODUCTS = [
    'tea' => ['Green tea', 450],   // name, price in cents
    'mug' => ['Mug', 900],
    'pot' => ['Tea pot', 2500],
];
const EXT = '.php';

session_start();

function h($s)
{
    return htmlspecialchars((string)$s, ENT_QUOTES);
}

function csrf_token()
{
    if (!isset($_SESSION['csrf'])) {
        $_SESSION['csrf'] = bin2hex(random_bytes(16));
    }
    return $_SESSION['csrf'];
}

function check_csrf()
{
    $sent = (string)($_POST['csrf'] ?? '');
    if ($_SERVER['REQUEST_METHOD'] !== 'POST' || !hash_equals((string)($_SESSION['csrf'] ?? ''), $sent)) {
        http_response_code(403);
        die('Invalid CSRF token');
    }
}

function flash($message)
{
    $_SESSION['flash'][] = $message;
}

function take_flashes()
{
    $messages = $_SESSION['flash'] ?? [];
    unset($_SESSION['flash']);
    return $messages;
}

function redirect($page)
{
    header("Location: $page" . EXT, true, 303);
    exit;
}

function require_login()
{
    if (!isset($_SESSION['user'])) {
        flash('Please log in.');
        redirect('login');
    }
}

function cart()
{
    return $_SESSION['cart'] ?? [];
}

function money($cents)
{
    return number_format($cents / 100, 2);
}
