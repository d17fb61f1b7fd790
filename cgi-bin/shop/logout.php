<?php
// logout.php: POST only (with the CSRF token): the data dropped, the old session deleted
// and a new id sent, so the "Logged out." flash survives to the next page.
require_once 'common.php';
check_csrf();

$_SESSION = [];
session_regenerate_id(true);
flash('Logged out.');
redirect('login');
