#!/usr/bin/env bash
# Runs the phpsess demo on the embedded server (no nginx, no configuration):
# installs phpsess with pip, then serves cgi-bin/ on http://127.0.0.1:8080/
# Extra arguments go to `phpsess serve`, e.g. `bash scripts/demo.sh --port 9000`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -e . 2>&1 | grep -v -e '^WARNING: Running pip as' -e 'is ignored: it is neither' || true
exec python3 -m phpsess serve --root cgi-bin "$@"
