#!/usr/bin/env python3
"""counter.py: the classic PHP page-view counter.

    <?php
    session_start();
    $_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
    header('Content-Type: text/plain; charset=UTF-8');
    echo "n = {$_SESSION['n']}\n";
"""

import phpsess
from phpsess import SESSION

phpsess.session_start()
SESSION["n"] = SESSION.get("n", 0) + 1
phpsess.header("Content-Type: text/plain; charset=UTF-8")
print(f"n = {SESSION['n']}")
