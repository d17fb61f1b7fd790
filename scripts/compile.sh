#!/usr/bin/env bash
# Builds a compiled copy of this checkout: the modules of a pool worker's request path
# (phpsess/compiled.py: COMPILED_MODULES) compiled to C extensions with mypyc, everything
# else as it is.  The checkout itself is left alone (an extension module next to its .py
# would shadow later edits of the source).
#
#   bash scripts/compile.sh [DEST]        # default: build/compiled
#   cd build/compiled && python3 -m phpsess fpm ...     # or PYTHONPATH=build/compiled
#
# Needs a C compiler and the Python headers (installed with apt-get when missing, as
# root) and mypy (pip).  Prints the destination on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
# the checkout's virtual environment (scripts/venv.sh), when there is one and none is active
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/python3 ]; then export PATH="$(pwd)/.venv/bin:$PATH"; fi
src="$(pwd)"
dest="${1:-build/compiled}"

if ! command -v gcc >/dev/null || ! python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
    echo "installing with apt-get: gcc python3-dev" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends gcc libc6-dev python3-dev >/dev/null
fi
python3 -c 'import mypyc' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check 'mypy>=1.8' 2>&1 | grep -v -e '^WARNING: Running pip as' || true

rm -rf "$dest"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
# the tracked files (and any uncommitted edits to them), not build products; without
# git (an unpacked archive), everything but build/
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$src" ls-files -z --cached --others --exclude-standard | (cd "$src" && xargs -0 cp --parents -t "$dest" 2>/dev/null || true)
else
    (cd "$src" && find . -path ./build -prune -o -name __pycache__ -prune -o -type f -print0 | xargs -0 cp --parents -t "$dest")
fi
cd "$dest"
# the list is phpsess.compiled's (the copy is still plain Python here)
mapfile -t files < <(python3 -c 'from phpsess.compiled import COMPILED_MODULES as m; print("\n".join(n.replace(".", "/") + ".py" for n in m))')
[ ${#files[@]} -gt 0 ] || { echo "no modules to compile: is phpsess importable here? ($dest)" >&2; exit 1; }
python3 -m mypyc "${files[@]}" > build.log 2>&1 || { tail -40 build.log >&2; echo "mypyc failed (log: $dest/build.log)" >&2; exit 1; }
rm -rf build .mypy_cache
python3 -c 'import phpsess.compiled as c; n = c.compiled_modules(); assert len(n) == len(c.COMPILED_MODULES), n; print(f"compiled {len(n)} modules")'
echo "$dest"
