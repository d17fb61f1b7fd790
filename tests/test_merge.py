"""Unit tests of phpsess/core/merge.py (merge mode) and of lazy start, through the memory handler.

No files, no processes: requests run in-process (``request_context``); a request
nested inside another plays "a concurrent request of the same session".  The same
behaviours under real concurrency (processes, PHP, Redis) are in
tests/integration/test_beyond_php.py.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Callable

import pytest

from phpsess import php
from phpsess.core.config import SessionConfig
from phpsess.errors import ConfigError, MergeConflict, PHPWarning
from phpsess.storage.memory import STORE, MemoryHandler
from phpsess.core.merge import DELETED, apply_changes, changes, conflicts, merge_stored, snapshot
from phpsess.session.request import Request
from phpsess.session.context import request_context

__all__: list[str] = []

SID = "0123456789abcdef0123456789abcdef"
_partition = itertools.count()


# -- the pure part -------------------------------------------------------------------------
def test_snapshot_serializes_each_top_level_value() -> None:
    assert snapshot({"a": 1, "b": [1, 2], 3: None}) == {"a": b"i:1;", "b": b"a:2:{i:0;i:1;i:1;i:2;}", 3: b"N;"}


def test_snapshot_of_an_unencodable_value_is_empty_and_always_a_change() -> None:
    base = snapshot({"f": {1, 2}})
    assert base == {"f": b""}
    assert "f" in changes(base, {"f": {1, 2}})


CHANGES = [
    # base data, data now, expected delta
    ({"a": 1}, {"a": 1}, {}),
    ({"a": 1}, {"a": 2}, {"a": 2}),
    ({"a": 1}, {"a": 1, "b": 2}, {"b": 2}),
    ({"a": 1, "b": 2}, {"b": 2}, {"a": DELETED}),
    ({"a": [1, 2]}, {"a": [1, 2, 3]}, {"a": [1, 2, 3]}),  # inside an array: the whole key
    ({"a": {"x": 1}}, {"a": {"x": 1}}, {}),  # an equal copy is no change
    ({"a": 1}, {"a": "1"}, {"a": "1"}),  # int 1 and string "1" serialize differently
    ({"a": 1.0}, {"a": 1}, {"a": 1}),
    ({}, {}, {}),
    ({"a": 1, "b": 2}, {}, {"a": DELETED, "b": DELETED}),  # session_unset()
]


@pytest.mark.parametrize(("before", "after", "delta"), CHANGES)
def test_changes_finds_set_modified_and_deleted_top_level_keys(
    before: dict[Any, Any], after: dict[Any, Any], delta: dict[Any, Any]
) -> None:
    assert changes(snapshot(before), after) == delta


def test_apply_changes_keeps_stored_order_and_appends_new_keys() -> None:
    stored = {"x": 1, "y": 2, "z": 3}
    merged = apply_changes(stored, {"new": 0, "y": DELETED, "x": 10, "gone": DELETED})
    assert list(merged.items()) == [("x", 10), ("z", 3), ("new", 0)]
    assert stored == {"x": 1, "y": 2, "z": 3}  # not modified in place


CONFLICTS = [
    # base, stored now (another request wrote), this request's data, conflicting keys
    ({"a": 1}, {"a": 1}, {"a": 2}, []),  # nobody else touched a
    ({"a": 1}, {"a": 5}, {"a": 2}, ["a"]),  # both changed a
    ({"a": 1}, {"a": 5}, {"a": 5}, ["a"]),  # both set the same value: n += 1 twice is a lost update
    ({}, {"n": 1}, {"n": 1}, ["n"]),
    ({"a": 1}, {}, {"a": 2}, ["a"]),  # the other deleted it, we changed it
    ({"a": 1}, {}, {}, ["a"]),  # both deleted it
    ({"a": 1}, {"a": 5, "b": 1}, {"a": 1, "b": 2}, ["b"]),
    ({"a": 1}, {"a": 5}, {}, ["a"]),  # we deleted it, the other changed it
    ({}, {"a": 5}, {"a": 2}, ["a"]),  # both created it
    ({"a": 1}, {"a": 5, "b": 1}, {"a": 1, "c": 1}, []),  # different keys
]


@pytest.mark.parametrize(("before", "stored", "after", "clash"), CONFLICTS)
def test_conflicts_are_keys_both_requests_changed_differently(
    before: dict[str, Any], stored: dict[str, Any], after: dict[str, Any], clash: list[str]
) -> None:
    base = snapshot(before)
    assert conflicts(base, stored, changes(base, after)) == clash


def test_merge_stored_overwrite_is_last_write_wins_per_key() -> None:
    base = snapshot({"a": 1, "b": 1, "c": 1})
    stored = {"a": "other", "b": "other", "c": 1}
    assert merge_stored(base, {"a": "mine", "b": 1}, stored) == {"a": "mine", "b": "other"}


def test_merge_stored_error_raises_merge_conflict_naming_the_keys() -> None:
    base = snapshot({"a": 1, "b": 1})
    with pytest.raises(MergeConflict) as info:
        merge_stored(base, {"a": 2, "b": 2}, {"a": 9, "b": 1}, on_conflict="error")
    assert info.value.keys == ["a"]
    assert "a" in str(info.value)


def test_merge_stored_returns_none_when_nothing_changed() -> None:
    assert merge_stored(snapshot({"a": 1}), {"a": 1}, {"a": 2}) is None


def test_merge_conflict_setting_accepts_overwrite_and_error_only() -> None:
    assert SessionConfig().merge_conflict == "overwrite"
    assert SessionConfig({"merge_conflict": "ERROR"}).merge_conflict == "error"
    with pytest.raises(ConfigError):
        SessionConfig({"merge_conflict": "first"})


# -- merge mode in Session, through the memory handler ---------------------------------------
class Site:
    """Requests of one browser (one session id) against one partition of the memory store."""

    def __init__(self, **ini: Any) -> None:
        self.save_path = f"/test-merge/{next(_partition)}"
        self.ini = {"save_handler": "memory", "save_path": self.save_path, "gc_probability": 0, **ini}

    def request(self, page: Callable[[], Any], **ini: Any) -> Any:
        """Run ``page()`` as one request carrying the session cookie."""
        env = {"HTTP_COOKIE": f"PHPSESSID={SID}", "SCRIPT_FILENAME": "/nonexistent/page.php"}
        req = Request(environ=env, config=SessionConfig({**self.ini, **ini}), clock=lambda: 1e9)
        with request_context(req):
            return page()

    def put(self, data: bytes) -> None:
        """Store ``data`` as the session's payload."""
        STORE.data[(self.save_path, SID)] = (data, 1e9)

    def stored(self) -> bytes | None:
        """The session's payload now."""
        entry = STORE.data.get((self.save_path, SID))
        return None if entry is None else entry[0]


def start_set(**values: Any) -> Callable[[], None]:
    """A page: session_start() (the site's settings), then set ``values``."""

    def page() -> None:
        php.session_start()
        php.SESSION.update(values)

    return page


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records the memory handler's read/write/update_timestamp calls."""
    out: list[str] = []
    for name in ("read", "write", "update_timestamp"):
        orig = getattr(MemoryHandler, name)

        def wrap(h: MemoryHandler, *args: Any, _orig: Any = orig, _name: str = name, **kw: Any) -> Any:
            out.append(_name)
            return _orig(h, *args, **kw)

        monkeypatch.setattr(MemoryHandler, name, wrap)
    return out


def test_merge_mode_releases_the_lock_after_start_and_takes_it_again_to_write(calls: list[str]) -> None:
    s = Site(concurrency="merge", lock_timeout=0.2)
    s.put(b"n|i:1;")

    def page() -> None:
        php.session_start()
        assert calls == ["read"]
        php.SESSION["a"] = 1
        s.request(start_set(b=2), concurrency="lock")  # the lock was released: this gets through
        calls.clear()

    s.request(page)
    assert calls == ["read", "write"]
    assert s.stored() == b"n|i:1;b|i:2;a|i:1;"


def test_merge_mode_request_that_changed_nothing_only_touches_and_keeps_newer_data(calls: list[str]) -> None:
    s = Site(concurrency="merge", lock_timeout=0.2)
    s.put(b"n|i:1;")

    def page() -> None:
        php.session_start()
        assert php.SESSION["n"] == 1
        s.request(start_set(n=2))
        calls.clear()

    s.request(page)
    assert calls == ["read", "update_timestamp"]
    assert s.stored() == b"n|i:2;"  # not this request's stale n=1


def test_merge_mode_without_lazy_write_rewrites_the_stored_bytes_not_its_copy(calls: list[str]) -> None:
    s = Site(concurrency="merge", lock_timeout=0.2, lazy_write=0)
    s.put(b"n|i:1;")

    def page() -> None:
        php.session_start()
        s.request(start_set(n=2))
        calls.clear()

    s.request(page)
    assert calls == ["read", "write"]
    assert s.stored() == b"n|i:2;"


def test_merge_mode_deletion_and_unset_remove_only_keys_this_request_saw() -> None:
    s = Site(concurrency="merge", lock_timeout=0.2)
    s.put(b"a|i:1;b|i:1;")

    def page() -> None:
        php.session_start()
        php.session_unset()
        php.SESSION["mine"] = True
        s.request(start_set(late=1))

    s.request(page)
    assert s.stored() == b"late|i:1;mine|b:1;"


def test_merge_mode_session_data_after_close_is_the_merged_data() -> None:
    s = Site(concurrency="merge", lock_timeout=0.2)

    def page() -> dict[str, Any]:
        php.session_start()
        php.SESSION["a"] = 1
        s.request(start_set(b=2))
        php.session_write_close()
        return dict(php.SESSION)

    assert s.request(page) == {"b": 2, "a": 1}


def test_merge_conflict_error_refuses_the_whole_write_and_releases_the_lock() -> None:
    s = Site(concurrency="merge", merge_conflict="error", lock_timeout=0.2)
    s.put(b"a|i:1;b|i:1;")

    def page() -> tuple[list[str], int]:
        php.session_start()
        php.SESSION["a"] = "mine"
        php.SESSION["c"] = "mine too"
        s.request(start_set(a="other"))
        with pytest.raises(MergeConflict) as info:
            php.session_write_close()
        status = php.session_status()
        # the script may retry: start again (fresh data), redo the change
        php.session_start()
        assert php.SESSION["a"] == "other"
        php.SESSION["a"] = "mine, after seeing other"
        return info.value.keys, status

    assert s.request(page) == (["a"], php.PHP_SESSION_NONE)
    assert s.stored() == b'a|s:24:"mine, after seeing other";b|i:1;'


def test_merge_conflict_error_allows_changes_of_different_keys() -> None:
    s = Site(concurrency="merge", merge_conflict="error", lock_timeout=0.2)
    s.put(b"a|i:1;")

    def page() -> None:
        php.session_start()
        php.SESSION["a"] = 5
        php.SESSION["mine"] = 1
        s.request(start_set(other=1))

    s.request(page)
    assert s.stored() == b"a|i:5;other|i:1;mine|i:1;"


def test_merge_conflict_error_catches_two_identical_increments() -> None:
    s = Site(concurrency="merge", merge_conflict="error", lock_timeout=0.2)
    s.put(b"n|i:1;")

    def page() -> None:
        php.session_start()
        php.SESSION["n"] += 1
        s.request(start_set(n=2))
        with pytest.raises(MergeConflict):
            php.session_write_close()

    s.request(page)
    assert s.stored() == b"n|i:2;"


def test_merge_conflict_error_at_request_end_is_logged_and_nothing_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = Site(concurrency="merge", merge_conflict="error", lock_timeout=0.2)
    s.put(b"a|i:1;")

    def page() -> None:
        php.session_start()
        php.SESSION["a"] = 2
        php.SESSION["b"] = 2
        s.request(start_set(a=3))

    with caplog.at_level(logging.WARNING, logger="phpsess.session.session"):
        s.request(page)
    assert s.stored() == b"a|i:3;"
    assert any("not written (merge mode)" in r.getMessage() and "a" in r.getMessage() for r in caplog.records)


def test_merge_conflict_overwrite_is_the_default_last_write_wins() -> None:
    s = Site(concurrency="merge", lock_timeout=0.2)
    s.put(b"a|i:1;")

    def page() -> None:
        php.session_start()
        php.SESSION["a"] = 2
        s.request(start_set(a=3, b=3))

    s.request(page)
    assert s.stored() == b"a|i:2;b|i:3;"


@pytest.mark.parametrize(
    ("handler", "initial", "expected"),
    [
        ("php_serialize", b'a:1:{s:1:"a";i:1;}', b'a:3:{s:1:"a";i:1;s:1:"b";i:2;s:4:"mine";i:1;}'),
        ("php_binary", b"\x01ai:1;", b"\x01ai:1;\x01bi:2;\x04minei:1;"),
    ],
)
def test_merge_mode_works_with_every_serialize_handler(handler: str, initial: bytes, expected: bytes) -> None:
    s = Site(concurrency="merge", lock_timeout=0.2, serialize_handler=handler)
    s.put(initial)

    def page() -> None:
        php.session_start()
        php.SESSION["mine"] = 1
        s.request(start_set(b=2))

    s.request(page)
    assert s.stored() == expected


def test_merge_mode_regenerate_id_writes_everything_under_the_new_id() -> None:
    s = Site(concurrency="merge", lock_timeout=0.2)
    s.put(b"a|i:1;")

    def page() -> str:
        php.session_start()
        php.session_regenerate_id(True)
        php.SESSION["b"] = 2
        return str(php.session_id())

    new = s.request(page)
    assert new != SID
    assert s.stored() is None  # the old one was deleted
    assert STORE.data[(s.save_path, new)][0] == b"a|i:1;b|i:2;"


def test_merge_mode_read_and_close_reads_and_writes_nothing(calls: list[str]) -> None:
    s = Site(concurrency="merge")
    s.put(b"a|i:1;")
    assert s.request(lambda: (php.session_start({"read_and_close": True}), dict(php.SESSION))[1]) == {"a": 1}
    assert calls == ["read"]


def test_merge_mode_stored_data_that_no_longer_decodes_is_replaced_by_this_requests(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = Site(concurrency="merge", lock_timeout=0.2)
    s.put(b"a|i:1;")

    def page() -> None:
        php.session_start()
        php.SESSION["b"] = 2
        s.put(b"garbage")

    with caplog.at_level(logging.WARNING, logger="phpsess.core.merge"):
        s.request(page)
    assert s.stored() == b"b|i:2;"
    assert any("does not decode" in r.getMessage() for r in caplog.records)


# -- lazy start ----------------------------------------------------------------------------------
def test_lazy_start_sends_cookie_and_cache_headers_at_start_but_reads_nothing(calls: list[str]) -> None:
    s = Site(lazy_start=1)
    env = {"SCRIPT_FILENAME": "/nonexistent/page.php"}  # no cookie: a new session
    req = Request(environ=env, config=SessionConfig(s.ini), clock=lambda: 1e9)
    with request_context(req):
        assert php.session_start() is True
        assert php.session_status() == php.PHP_SESSION_ACTIVE
        sid = php.session_id()
    names = [name for name, _ in req.headers]
    assert ("Set-Cookie", f"PHPSESSID={sid}; path=/") in req.headers
    assert "Cache-Control" in names and "Expires" in names
    assert calls == []  # never read, never written
    assert (s.save_path, sid) not in STORE.data


def test_lazy_start_reads_on_first_use_of_session(calls: list[str]) -> None:
    s = Site(lazy_start=1)
    s.put(b"n|i:1;")

    def page() -> int:
        php.session_start()
        assert calls == []
        n = int(php.SESSION["n"])
        assert calls == ["read"]
        php.SESSION["n"] = n + 1
        return n

    assert s.request(page) == 1
    assert s.stored() == b"n|i:2;"


@pytest.mark.parametrize(
    "use",
    [
        lambda: php.session_encode(),
        lambda: php.session_regenerate_id(),
        lambda: php.session_decode(b"x|i:1;"),
        lambda: php.session_reset(),
        lambda: php.session_unset(),
        lambda: "n" in php.SESSION,
        lambda: len(php.SESSION),
    ],
)
def test_lazy_start_session_functions_that_need_the_data_read_it_first(use: Callable[[], Any], calls: list[str]) -> None:
    s = Site(lazy_start=1)
    s.put(b"n|i:1;")

    def page() -> None:
        php.session_start()
        use()
        assert "read" in calls

    s.request(page)


def test_lazy_start_with_merge_mode_locks_only_briefly_at_first_use_and_at_write(calls: list[str]) -> None:
    s = Site(lazy_start=1, concurrency="merge", lock_timeout=0.2)
    s.put(b"n|i:1;")

    def page() -> None:
        php.session_start()
        s.request(start_set(early=1), concurrency="lock", lazy_start=0)
        php.SESSION["n"] += 1  # first use: reads the early request's data too
        s.request(start_set(late=1), concurrency="lock", lazy_start=0)

    s.request(page)
    assert s.stored() == b"n|i:2;early|i:1;late|i:1;"


def test_lazy_start_read_failure_at_first_use_warns_like_a_failed_start() -> None:
    s = Site(lazy_start=1, lock_timeout=0.05)
    s.put(b"n|i:1;")
    holder = MemoryHandler(SessionConfig(s.ini))
    holder.open(s.save_path, "PHPSESSID")
    holder.read(SID)  # another request holds the lock
    try:

        def page() -> tuple[Any, int]:
            php.session_start()
            with pytest.warns(PHPWarning) as rec:
                value = php.SESSION.get("n")
            texts = [str(w.message) for w in rec]
            assert any("not acquired within session.lock_timeout" in t for t in texts), texts
            assert any("Failed to read session data" in t for t in texts), texts
            return value, php.session_status()

        assert s.request(page) == (None, php.PHP_SESSION_NONE)
    finally:
        holder.close()
    assert s.stored() == b"n|i:1;"


def test_merge_mode_regenerate_id_keeps_the_old_ids_concurrent_changes() -> None:
    s = Site(concurrency="merge", lock_timeout=0.2)
    s.put(b"a|i:1;")

    def page() -> str:
        php.session_start()
        php.SESSION["mine"] = 1
        s.request(start_set(other=1))
        php.session_regenerate_id()
        php.SESSION["after"] = 1
        return str(php.session_id())

    new = s.request(page)
    assert s.stored() == b"a|i:1;other|i:1;mine|i:1;"  # the old id: merged, nothing lost
    assert STORE.data[(s.save_path, new)][0] == b"a|i:1;other|i:1;mine|i:1;after|i:1;"
