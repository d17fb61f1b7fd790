# Sourced by scripts/demo.sh and scripts/test.sh (bash): `phpsess_env [EXTRAS]` makes
# `python3` on PATH a Python that has this checkout installed (editable, with EXTRAS such
# as "test"), without touching the system's Python (PEP 668 forbids pip there on Debian):
#
# * a virtual environment in .venv (it sees the system's packages, so what apt installed
#   is not downloaded again), made with `python3 -m venv`; on Debian without the
#   python3-venv package, that package is installed first (apt-get, as root);
# * where no virtual environment can be made (not root, no apt-get), pip installs into
#   the user's or system's Python with --break-system-packages.
#
# Quiet unless something fails: then the log (.venv.log) is shown.  The install is redone
# only when setup.cfg, setup.py, pyproject.toml or EXTRAS change.

phpsess_env() {
    local extras="${1:-}" root venv log spec stamp
    root="$(pwd)"
    venv="$root/.venv"
    log="$root/.venv.log"
    spec="."
    [ -n "$extras" ] && spec=".[$extras]"
    : > "$log"
    if [ ! -x "$venv/bin/python3" ] || ! "$venv/bin/python3" -m pip --version >/dev/null 2>&1; then
        rm -rf "$venv"
        if ! python3 -m venv --system-site-packages "$venv" >>"$log" 2>&1; then
            rm -rf "$venv"
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
                echo "installing with apt-get: python3-venv"
                export DEBIAN_FRONTEND=noninteractive
                { apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv; } >>"$log" 2>&1 \
                    && python3 -m venv --system-site-packages "$venv" >>"$log" 2>&1 || rm -rf "$venv"
            fi
        fi
    fi
    if [ -x "$venv/bin/python3" ]; then
        export VIRTUAL_ENV="$venv"
        export PATH="$venv/bin:$PATH"
        stamp="$(cat setup.cfg setup.py pyproject.toml 2>/dev/null | cksum) $spec"
        [ "$(cat "$venv/.phpsess-installed" 2>/dev/null)" = "$stamp" ] && return 0
        if python3 -m pip install -q --disable-pip-version-check -e "$spec" >>"$log" 2>&1; then
            echo "$stamp" > "$venv/.phpsess-installed"
            return 0
        fi
    else
        echo "no virtual environment (python3 -m venv failed; see $log): installing with pip into $(command -v python3)"
        if python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --break-system-packages -e "$spec" >>"$log" 2>&1 \
            || python3 -m pip install -q --disable-pip-version-check -e "$spec" >>"$log" 2>&1; then
            return 0
        fi
    fi
    cat "$log" >&2
    echo "installing phpsess failed (log above, also in $log)" >&2
    return 1
}
