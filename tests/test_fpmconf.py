"""php-fpm's configuration (phpsess.core.fpmconf) and its logs' formats (phpsess.core.fpmlog):
pure functions, no files.  The integration tests run php-fpm on the same files
(tests/integration/test_pool_controls.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phpsess.core import fpmconf, fpmlog
from phpsess.core.fpmconf import FpmConfigError, build_config, parse_duration, parse_size, read_entries


def config(text: str, warnings: list[str] | None = None) -> fpmconf.FpmConfig:
    sink = warnings if warnings is not None else []
    return build_config(read_entries(text, "www.conf", {"POOL_USER": "web"}), sink.append)


def test_times_and_sizes_read_as_php_fpm_reads_them() -> None:
    assert [parse_duration(t) for t in ("30", "30s", "5m", "1h", "1d", " 7 s ")] == [30, 30, 300, 3600, 86400, 7]
    assert parse_duration("1.5s") is None and parse_duration("-1") is None and parse_duration("5 min") is None
    assert [parse_size(t) for t in ("512", "8M", "128k", "1G", "2g")] == [512, 8 << 20, 128 << 10, 1 << 30, 2 << 30]
    assert parse_size("8MB") is None and parse_size("") is None


def test_a_pool_file_with_every_directive_phpsess_uses() -> None:
    cfg = config("""
[global]
pid = /run/x.pid
error_log = /var/log/x.log

[www]
user = ${POOL_USER}
group = web
listen = /run/$pool.sock
listen.owner = web
listen.mode = 0600
pm = dynamic
pm.max_children = 8
pm.start_servers = 2
pm.min_spare_servers = 1
pm.max_spare_servers = 3
pm.process_idle_timeout = 1m
pm.max_requests = 500
pm.status_path = /status
ping.path = /ping
ping.response = ok
request_terminate_timeout = 2m
request_slowlog_timeout = 5s
slowlog = /var/log/$pool.slow
chdir = /srv
php_value[session.save_path] = /tmp/s
php_admin_value[session.save_path] = /var/s
php_flag[session.use_strict_mode] = on
env[APP] = 1
""")
    pool = cfg.pool(None)
    assert (cfg.global_.pid, cfg.global_.error_log) == ("/run/x.pid", "/var/log/x.log")
    assert (pool.name, pool.user, pool.listen, pool.listen_mode) == ("www", "web", "/run/www.sock", 0o600)
    assert (pool.pm, pool.pm_max_children, pool.pm_start_servers) == ("dynamic", 8, 2)
    assert (pool.pm_process_idle_timeout, pool.request_terminate_timeout, pool.request_slowlog_timeout) == (60, 120, 5)
    assert pool.slowlog == "/var/log/www.slow" and pool.chdir == "/srv" and pool.env == {"APP": "1"}
    assert pool.ini("session.save_path") == "/var/s"  # php_admin_value wins
    assert pool.ini("session.use_strict_mode") == "1"


@pytest.mark.parametrize(("line", "reason"), [
    ("pm = sometimes", "invalid process manager"),
    ("pm.max_children = lots", "a whole number is needed"),
    ("pm.max_children = -1", "a whole number is needed"),
    ("listen.mode = 0999", "invalid mode"),
    ("pm.status_path = status", "must start with a '/'"),
    ("request_terminate_timeout = soon", "invalid time value"),
])
def test_a_wrong_value_names_the_file_line_and_reason(line: str, reason: str) -> None:
    with pytest.raises(FpmConfigError) as err:
        config(f"[www]\nlisten = /x.sock\npm = static\npm.max_children = 2\n{line}\n")
    assert "www.conf:5" in str(err.value) and reason in str(err.value), str(err.value)


def test_unknown_and_unused_directives_warn_with_file_and_line() -> None:
    warnings: list[str] = []
    config("[www]\nlisten = /x.sock\npm = static\npm.max_children = 2\nrlimit_files = 1024\nfrobnicate = 1\n",
           warnings)
    assert warnings == [
        "[www.conf:5] 'rlimit_files' is php-fpm's and has no effect in phpsess fpm; ignored",
        "[www.conf:6] unknown entry 'frobnicate'; ignored",
    ]


def test_missing_pool_or_required_directive() -> None:
    with pytest.raises(FpmConfigError, match="no pool defined"):
        config("[global]\npid = /x.pid\n")
    with pytest.raises(FpmConfigError, match="pm"):
        config("[www]\nlisten = /x.sock\n")
    two = config("[a]\nlisten = /a\npm = static\npm.max_children = 1\n[b]\nlisten = /b\npm = static\npm.max_children = 1\n")
    with pytest.raises(FpmConfigError, match="choose one with --pool"):
        two.pool(None)
    assert two.pool("b").listen == "/b"


def _record(**kw: object) -> fpmlog.AccessRecord:
    base: dict[str, object] = dict(
        pool="www", pid=42, master_pid=1, status=200, started=0.0, duration=0.25, cpu_percent=12.5,
        cpu_user=10.0, cpu_system=2.5, memory=2 << 20, content_length=7, script="/srv/a.py",
        params={"REQUEST_METHOD": "POST", "REQUEST_URI": "/a.py?x=1", "QUERY_STRING": "x=1", "HTTP_HOST": "h"},
        headers=[("Content-type", "text/html; charset=UTF-8"), ("X-A", "b")],
    )
    base.update(kw)
    return fpmlog.AccessRecord(**base)  # type: ignore[arg-type]


def test_access_line_specifiers() -> None:
    line = fpmlog.access_line('%R %m %r%Q%q %s %f %n %l %{mili}d %{kilo}M %C%% %{X-A}o %{Content-type}o %{HTTP_HOST}e %p %P',
                              _record(), now=0.0)
    # %R is the FastCGI client (none on a unix socket), %o only the headers the script sent
    assert line == "- POST /a.py?x=1 200 /srv/a.py www 7 250.000 2048 12.50% b - h 42 1"
    assert fpmlog.access_line("%R", _record(client_ip="127.0.0.1"), now=0.0) == "127.0.0.1"
    assert fpmlog.check_access_format("%Z") is not None and fpmlog.check_access_format("%o") is not None
    assert fpmlog.check_access_format('%R - %u %t "%m %r" %s') is None


def test_status_page_formats_share_php_fpm_s_names() -> None:
    pool = fpmlog.PoolFigures(
        pool="www", process_manager="static", start_time=100.0, accepted_conn=3, listen_queue=0,
        max_listen_queue=0, listen_queue_len=0, idle_processes=1, active_processes=1, max_active_processes=2,
        max_children_reached=0, slow_requests=0, processes=[],
    )
    _, text = fpmlog.status_page(pool, "", now=160.0)
    assert text.decode().splitlines()[:2] == ["pool:                 www", "process manager:      static"]
    _, body = fpmlog.status_page(pool, "json", now=160.0)
    assert json.loads(body)["start since"] == 60


def test_a_whole_php_fpm_conf_with_include_is_read_as_php_fpm_reads_it(tmp_path: Path) -> None:
    """``[global]`` with ``include = pool.d/*.conf`` (relative to the file, as php-fpm's
    prefix), the pool's php_value[session.*] over the process-wide settings."""
    from phpsess.runtime.fpm import load_config

    (tmp_path / "pool.d").mkdir()
    (tmp_path / "pool.d" / "www.conf").write_text(
        "[www]\nlisten = /run/www.sock\npm = static\npm.max_children = 3\nchdir = /srv\n"
        "php_value[session.name] = APPSESS\nphp_admin_value[session.gc_maxlifetime] = 60\n")
    main = tmp_path / "php-fpm.conf"
    main.write_text(f"[global]\npid = {tmp_path}/fpm.pid\nerror_log = {tmp_path}/fpm.log\n"
                    f"include = {tmp_path}/pool.d/*.conf\n")
    opts, session = load_config(str(main))
    assert (opts.listen, opts.root, opts.pool.max_children, opts.pid_file) == ("/run/www.sock", "/srv", 3,
                                                                               f"{tmp_path}/fpm.pid")
    assert (session.name, session.gc_maxlifetime) == ("APPSESS", 60)
    (tmp_path / "pool.d" / "www.conf").unlink()
    main.write_text("[global]\ninclude = /nonexistent/www.conf\n")
    with pytest.raises(FpmConfigError, match="php-fpm.conf:2.*unable to include /nonexistent/www.conf"):
        load_config(str(main))
