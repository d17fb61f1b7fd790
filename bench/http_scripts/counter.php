<?php
// The session counter of bench/http.py, as php-fpm runs it (counter.py is the same page).
session_start();
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
header('Content-Type: text/plain; charset=UTF-8');
echo "n = {$_SESSION['n']}\n";
