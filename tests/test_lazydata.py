"""phpsess.core.lazydata: key-by-key encoding equals the whole-session encoder; lazy decode on use."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phpsess.core import codec, formats as encoding
from phpsess.core.lazydata import SessionData, SpanCache, encode_entries

KEYS = st.one_of(st.text(max_size=5), st.integers(-5, 5))
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
    st.text(max_size=8), st.binary(max_size=6),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers(0, 9)), inner, max_size=4),
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_key_by_key_encoding_is_byte_identical_to_the_session_encoder(data: dict[Any, Any]) -> None:
    skipped_a: list[int] = []
    skipped_b: list[int] = []
    whole = encoding.encode(data, "php", on_skip=skipped_a.append)
    payload, entries = encode_entries(data, skipped_b.append)
    assert payload == whole
    assert skipped_a == skipped_b
    if payload and entries:
        lazy = SessionData(payload, entries)
        assert dict(lazy.items()) == encoding.decode(payload, "php")
        assert encode_entries(SessionData(payload, entries)) == (payload, entries)


def test_untouched_keys_are_copied_as_bytes_and_touched_ones_reencoded() -> None:
    payload, entries = encode_entries({"big": list(range(100)), "n": 1})
    assert payload is not None and entries is not None
    lazy = SessionData(payload, entries)
    lazy["n"] = lazy["n"] + 1
    raw = dict((k, r) for k, r, _v in lazy.raw_items())
    assert raw["big"] == codec.dumps(list(range(100))) and raw["n"] is None
    assert encode_entries(lazy)[0] == encoding.encode({"big": list(range(100)), "n": 2}, "php")


def test_objects_fall_back_to_the_whole_session_encoder_without_warnings() -> None:
    skipped: list[int] = []
    obj = codec.PHPObject("stdClass", {"p": 1})
    assert encode_entries({5: 1, "a": obj, "b": obj}, skipped.append) == (None, None)
    assert skipped == []


def test_a_pipe_in_a_key_writes_nothing_after_reporting_numeric_keys() -> None:
    skipped: list[int] = []
    assert encode_entries({3: 1, "a|b": 2}, skipped.append) == (None, [])
    assert skipped == [3]


def test_span_cache_answers_only_for_the_exact_bytes_it_remembered() -> None:
    cache = SpanCache(max_entries=2)
    cache.remember("a", b"x|i:1;", [("x", 2, 6)])
    assert cache.lookup("a", b"x|i:1;") == [("x", 2, 6)]
    assert cache.lookup("a", b"x|i:2;") is None
    cache.remember("b", b"", [])
    cache.remember("c", b"", [])
    assert cache.lookup("a", b"x|i:1;") is None  # evicted, least recently used


def test_a_session_this_process_wrote_is_read_back_lazily(tmp_path: Any) -> None:
    from phpsess.core.config import SessionConfig
    from phpsess.session.request import Request
    from phpsess.session.context import request_context

    cfg = SessionConfig({"save_path": str(tmp_path), "gc_probability": "0", "use_cookies": "0"})
    for expected in (1, 2, 3):
        req = Request(environ={}, config=cfg, cli=True)
        with request_context(req):
            s = req.session
            s.set_id("lazyid123")
            assert s.start()
            if expected > 1:
                assert isinstance(s.data, SessionData)
            s.data["n"] = s.data.get("n", 0) + 1
            s.data.setdefault("profile", {"name": "x" * 200})
            assert s.write_close()
    assert (tmp_path / "sess_lazyid123").read_bytes() == encoding.encode(
        {"n": 3, "profile": {"name": "x" * 200}}, "php"
    )
    # bytes written by someone else (e.g. PHP) are decoded in full
    (tmp_path / "sess_lazyid123").write_bytes(b'n|i:7;profile|a:0:{}')
    req = Request(environ={}, config=cfg, cli=True)
    with request_context(req):
        s = req.session
        s.set_id("lazyid123")
        assert s.start()
        assert not isinstance(s.data, SessionData) and s.data == {"n": 7, "profile": []}


def test_span_cache_is_bounded_in_bytes() -> None:
    """Clients choose what goes into their sessions: 2,400 fresh 1 MB sessions once kept
    512 MiB in each worker.  The cache keeps a few MiB whatever it is given."""
    cache = SpanCache()
    big = b"x|s:200000:\"" + b"a" * 200000 + b"\";"
    for i in range(2400):
        cache.remember(f"s{i}", big + b"%d" % i, [("x", 2, len(big))])
    assert cache.bytes <= cache.max_bytes <= 4 << 20
    assert cache.lookup("s2399", big + b"2399") is not None  # the last ones stay
    huge = b"x|s:1000000:\"" + b"a" * 1000000 + b"\";"
    cache.remember("h", huge, [("x", 2, len(huge))])
    assert cache.lookup("h", huge) is None  # too large to keep at all
    many = [(f"k{i}", 0, 0) for i in range(100000)]  # a small payload of many keys
    cache.remember("m", b"k|N;" * 1000, many)
    assert cache.lookup("m", b"k|N;" * 1000) is None and cache.bytes <= cache.max_bytes
    for i in range(2400):
        cache.forget(f"s{i}")
    assert cache.bytes == 0


def _lazy(data: dict[str, Any]) -> SessionData:
    payload, entries = encode_entries(data)
    assert payload is not None and entries is not None
    return SessionData(payload, entries)


def test_session_data_is_a_mutable_mapping_that_behaves_as_a_dict() -> None:
    """SessionData is a MutableMapping by registration, with the mapping methods written
    out (so it compiles to a native class): each answers as a dict's does."""
    from collections.abc import Mapping, MutableMapping

    import pytest

    start = {"a": 1, "b": [1, 2], "c": {"x": "y"}, "d": None, "e": "text"}
    lazy, plain = _lazy(start), dict(start)
    assert isinstance(lazy, MutableMapping) and isinstance(lazy, Mapping)
    assert not isinstance({}, SessionData)  # the registration goes one way only
    assert lazy == plain and not (lazy != plain) and lazy != {"a": 1}
    assert list(lazy.keys()) == list(plain.keys())
    assert list(lazy.items()) == list(plain.items()) and list(lazy.values()) == list(plain.values())
    assert "b" in lazy.keys() and ("a", 1) in lazy.items()
    for d in (lazy, plain):
        assert d.get("zz") is None and d.get("zz", 5) == 5 and d.get("c") == {"x": "y"}
        assert d.pop("a") == 1 and d.pop("a", "gone") == "gone"
        assert d.setdefault("n", 7) == 7 and d.setdefault("n", 8) == 7
        d.update({"u": 1}, v=2)
        d.update([("w", 3)])
        assert d.popitem() == ("w", 3)
    assert lazy == plain and dict(lazy) == plain and lazy.copy() == plain
    with pytest.raises(KeyError):
        lazy.pop("nope")
    with pytest.raises(TypeError):
        hash(lazy)
    lazy.clear()
    assert len(lazy) == 0 and lazy == {}
    with pytest.raises(KeyError):
        lazy.popitem()
