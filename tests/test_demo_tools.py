"""Tests of phpsess/tools/demo.py and the demo's place in ``phpsess serve``: the demo's
private session directory (in tmp_path, through $PHPSESS_RUNTIME_DIR), the pages found
in a checkout and shipped in the package (setup.py build_py into tmp_path), and the
extra ports a user chooses (binds free ports of 127.0.0.1)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from phpsess.runtime import server
from phpsess.tools import demo
from phpsess.tools.cli import build_parser

__all__: list[str] = []

ROOT = Path(__file__).absolute().parents[1]


@pytest.fixture
def runtime_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    base = tmp_path / "run"
    base.mkdir()
    monkeypatch.setenv("PHPSESS_RUNTIME_DIR", str(base))
    return base


def test_private_save_path_is_a_0700_directory_of_this_user(runtime_base: Path) -> None:
    path = Path(demo.private_save_path())
    assert path == runtime_base / f"phpsess-{os.geteuid()}" / "demo-sessions"
    st = path.stat()
    assert st.st_mode & 0o777 == 0o700 and st.st_uid == os.geteuid()
    assert demo.private_save_path() == str(path)  # found again, not made twice
    assert demo.save_path_note(str(path)) == f"{path} (mode 0700)"


def test_private_save_path_refuses_a_directory_others_can_read(runtime_base: Path) -> None:
    planted = Path(demo.private_save_path())
    planted.chmod(0o755)
    with pytest.raises(PermissionError, match="mode 0700"):
        demo.private_save_path()


def test_private_save_path_refuses_a_symlink(runtime_base: Path, tmp_path: Path) -> None:
    (runtime_base / f"phpsess-{os.geteuid()}").mkdir(mode=0o711)
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (runtime_base / f"phpsess-{os.geteuid()}" / "demo-sessions").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PermissionError):
        demo.private_save_path()


def _save_path_in_a_script(runtime_base: Path, ini: str | None) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PHPSESS_RUNTIME_DIR=str(runtime_base))
    env.pop("PHPSESS_INI", None)
    if ini is not None:
        (runtime_base / "phpsess.ini").write_text(f'session.save_path = "{ini}"\n')
        env["PHPSESS_INI"] = str(runtime_base / "phpsess.ini")
    code = "from phpsess.tools.demo import use_private_save_path as u; import phpsess; u(); print(phpsess.ini_get('session.save_path'))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30,
                          check=True).stdout.strip()


def test_demo_pages_use_the_private_directory_unless_a_save_path_is_configured(runtime_base: Path) -> None:
    own = str(runtime_base / f"phpsess-{os.geteuid()}" / "demo-sessions")
    assert _save_path_in_a_script(runtime_base, None) == own
    assert _save_path_in_a_script(runtime_base, "/srv/sessions") == "/srv/sessions"


def test_serve_without_root_serves_cgi_bin_here_else_the_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert demo.default_root() == demo.demo_root() == str(ROOT / "cgi-bin")  # a checkout: its pages
    (tmp_path / "cgi-bin").mkdir()
    assert demo.default_root() == "cgi-bin"


def test_the_package_ships_the_demo_pages(tmp_path: Path) -> None:
    """What ``pip install phpsess`` installs: build_py puts cgi-bin's pages into phpsess/cgi-bin,
    where demo_root() finds them first."""
    out = tmp_path / "lib"
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(out)], cwd=ROOT,
                   capture_output=True, check=True, timeout=120)
    shipped = sorted(p.name for p in (out / "phpsess" / "cgi-bin").glob("*.py"))
    assert shipped == sorted(p.name for p in (ROOT / "cgi-bin").glob("*.py"))
    assert "demo.py" in shipped and "state.py" in shipped and "fanout.py" in shipped
    env = dict(os.environ, PYTHONPATH=str(out))
    found = subprocess.run([sys.executable, "-c", "from phpsess.tools.demo import demo_root; print(demo_root())"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=30).stdout
    assert found.strip() == str(out / "phpsess" / "cgi-bin")


@pytest.mark.parametrize(("given", "ports"), [("9001,9002", [9001, 9002]), ("none", []), ("0", [0])])
def test_serve_extra_ports_are_the_users_choice(given: str, ports: list[int]) -> None:
    assert build_parser().parse_args(["serve", "--extra-ports", given]).extra_ports == ports
    assert build_parser().parse_args(["serve"]).extra_ports is None


def _free_port_with_a_taken_neighbour() -> tuple[int, socket.socket]:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port >= 65534:
            continue
        taken = socket.socket()
        try:
            taken.bind(("127.0.0.1", port + 1))
            taken.listen(1)
        except OSError:
            taken.close()
            continue
        return port, taken
    raise AssertionError("no free port with a free neighbour")


def test_serve_extra_ports_default_to_the_two_after_the_main_port_skipping_taken_ones() -> None:
    port, taken = _free_port_with_a_taken_neighbour()
    try:
        listeners = server._bind_all(server.ServeOptions(port=port))
        try:
            bound = [s.getsockname()[1] for s in listeners]
        finally:
            for s in listeners:
                s.close()
    finally:
        taken.close()
    assert bound[0] == port and port + 1 not in bound and set(bound) <= {port, port + 2}


def test_serve_extra_ports_none_and_free_ones() -> None:
    for extra, n in (([], 1), ([0, 0], 3)):
        listeners = server._bind_all(server.ServeOptions(port=0, extra_ports=extra))
        try:
            assert len({s.getsockname()[1] for s in listeners}) == n
        finally:
            for s in listeners:
                s.close()
