<?php
// One more visit; ?ms=N keeps the session (and its lock) N milliseconds longer, to watch
// the lock at work: a framework page of the same session waits for this one, and the reverse.
session_start();
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
usleep(1000 * (int)($_GET['ms'] ?? 0));
header('Content-Type: application/json');
echo json_encode(['side' => 'php', 'n' => $_SESSION['n']]);
