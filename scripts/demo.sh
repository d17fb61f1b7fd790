#!/usr/bin/env bash
# Runs the phpsess demo on the embedded server (no nginx, no configuration):
# installs phpsess into a virtual environment (.venv, scripts/venv.sh), then serves
# cgi-bin/ on http://127.0.0.1:8080/ (the page's parallel requests also use 8081 and
# 8082 when they are free; through a forward of 8080 alone the page still runs).
# Extra arguments go to `phpsess serve`, e.g. `bash scripts/demo.sh --port 9000` or
# `--host 0.0.0.0 --extra-ports 9001,9002`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
phpsess_env
exec python3 -m phpsess serve --root cgi-bin "$@"
