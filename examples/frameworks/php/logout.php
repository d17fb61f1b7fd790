<?php
// The PHP manual's logout: empty $_SESSION, expire the cookie, destroy the stored session.
session_start();
$_SESSION = [];
$p = session_get_cookie_params();
setcookie(session_name(), '', 1, $p['path'], $p['domain'], $p['secure'], $p['httponly']);
session_destroy();
header('Content-Type: application/json');
echo json_encode(['side' => 'php', 'user' => null]);
