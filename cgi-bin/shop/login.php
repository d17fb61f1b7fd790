<?php
// login.php: the log-in form; on success a new session id (session fixation defence).
require_once 'common.php';

if ($_SERVER['REQUEST_METHOD'] === 'POST') {
    check_csrf();
    $user = trim((string)($_POST['user'] ?? ''));
    if ($user !== '' && ($_POST['password'] ?? '') === 'secret') {
        session_regenerate_id(true);
        $_SESSION['user'] = $user;
        flash("Welcome, $user!");
        redirect('index');
    }
    http_response_code(403);
    flash('Wrong user name or password.');
}
$title = 'Log in';
include 'header.php';
echo '<form method="post" action="login', EXT, '"><input type="hidden" name="csrf" value="', h(csrf_token()), '">', "\n";
echo '<label>User <input name="user"></label> <label>Password <input name="password" type="password"></label>', "\n";
echo "<button>Log in</button> (password: secret)</form>\n</body></html>\n";
