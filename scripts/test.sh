#!/usr/bin/env bash
# Runs the whole phpsess test suite on a fresh Debian machine (as root), installing
# what the tests need when it is missing: PHP 8.2 (cli, cgi, fpm, redis extension),
# nginx, fcgiwrap, redis-server, Chromium (apt-get) and the Python packages (pip, into
# the virtual environment .venv: scripts/venv.sh).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/test_codec.py -x`.
# The suite runs twice: on plain Python, then on a copy compiled with mypyc (needs gcc
# and the Python headers, installed with apt-get when missing, and mypy from pip).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v php >/dev/null || need_apt+=(php-cli)
command -v php-cgi >/dev/null || need_apt+=(php8.2-cgi)
[ -x /usr/sbin/php-fpm8.2 ] || need_apt+=(php-fpm)
php -n -d extension=igbinary.so -d extension=redis.so -r 'exit(extension_loaded("redis") ? 0 : 1);' 2>/dev/null || need_apt+=(php-redis)
[ -x /usr/sbin/nginx ] || need_apt+=(nginx)
[ -x /usr/sbin/fcgiwrap ] || need_apt+=(fcgiwrap)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing with apt-get: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

source scripts/venv.sh
phpsess_env test   # from here on, python3 is the virtual environment's (compile.sh's too)

# Two passes: the checkout as plain Python, then a copy with the request path compiled
# by mypyc (scripts/compile.sh; what bench/http.py measures).  PHPSESS_TEST_BUILDS=plain
# (or =compiled) runs one of them.
for build in ${PHPSESS_TEST_BUILDS:-plain compiled}; do
    case "$build" in
        plain)
            echo "== plain Python: $(pwd)"
            python3 -m pytest "$@"
            ;;
        compiled)
            dest="$(bash scripts/compile.sh build/compiled | tail -n 1)"
            echo "== compiled with mypyc: $dest"
            (cd "$dest" && PHPSESS_EXPECT_COMPILED=1 python3 -m pytest "$@")
            ;;
        *)
            echo "unknown build in PHPSESS_TEST_BUILDS: $build (plain, compiled)" >&2
            exit 2
            ;;
    esac
done
