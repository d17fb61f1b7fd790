<?php
// Log in (no password in this example): a new session id against fixation, then the user.
session_start();
session_regenerate_id(true);
$_SESSION['user'] = (string)($_GET['user'] ?? 'guest');
header('Content-Type: application/json');
echo json_encode(['side' => 'php', 'user' => $_SESSION['user']]);
