"""PHP's request parsing: ``$_GET``, ``$_COOKIE``, ``$_POST`` from raw request data. No I/O.

Follows main/php_variables.c (``php_default_treat_data``, ``php_register_variable_ex``,
the urlencoded POST reader) and main/rfc1867.c for multipart fields, as PHP 8.2 does:

* names: leading blanks dropped, ``.`` and space turned into ``_`` (before any ``[``),
  ``a[x][]`` array syntax, numeric-string keys becoming integers (``"12"`` -> 12), the
  nesting limit (64) and ``max_input_vars`` (1000);
* values: form decoding for GET and POST (``+`` -> space, ``%XX``), percent decoding
  only for cookies (``+`` stays), names of cookies not decoded at all;
* repeated names: the last wins for GET/POST, the first for cookies.

PHP arrays become Python values like the codec's: a ``list`` when the keys are exactly
0..n-1 in order, else a ``dict`` (int and str keys).  The superglobal itself is always a
``dict``.  Strings are ``str``, decoded from UTF-8 with surrogateescape so that every byte
survives (``s.encode("utf-8", "surrogateescape")`` gives PHP's bytes back).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Final, Union

from .zend import C_SPACE, LONG_MAX, LONG_MIN, c_str

__all__ = [
    "parse_query",
    "parse_cookies",
    "parse_post",
    "parse_multipart",
    "multipart_parts",
    "parse_files",
    "merge_request",
    "php_self",
    "UPLOAD_ERR_OK",
    "UPLOAD_ERR_INI_SIZE",
    "UPLOAD_ERR_FORM_SIZE",
    "UPLOAD_ERR_PARTIAL",
    "UPLOAD_ERR_NO_FILE",
    "UPLOAD_ERR_NO_TMP_DIR",
    "UPLOAD_ERR_CANT_WRITE",
    "UPLOAD_ERR_EXTENSION",
    "url_decode",
    "raw_url_decode",
    "MAX_INPUT_VARS",
    "MAX_INPUT_NESTING_LEVEL",
]

#: php.ini defaults
MAX_INPUT_VARS: Final = 1000
MAX_INPUT_NESTING_LEVEL: Final = 64

_HEX: Final = re.compile(rb"%([0-9A-Fa-f]{2})")
_NUMERIC_KEY: Final = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")

Warn = Callable[[str], None]
Key = Union[int, str]


def _decode(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def raw_url_decode(s: bytes) -> bytes:
    """PHP's ``rawurldecode()``: ``%XX`` decoded, everything else (``+`` too) kept."""
    if s.find(b"%") < 0:  # (not `in`: bytes.__contains__ tries the needle as an int first, a raised
        # and cleared TypeError each time)
        return s
    return _HEX.sub(lambda m: bytes((int(m.group(1), 16),)), s)


def url_decode(s: bytes) -> bytes:
    """PHP's ``urldecode()``: ``+`` -> space, ``%XX`` decoded, a bad ``%`` kept."""
    return raw_url_decode(s.replace(b"+", b" "))


class _PArray:
    """A PHP array under construction: ordered keys plus PHP's next free integer key."""

    __slots__ = ("items", "next_free")

    def __init__(self) -> None:
        self.items: dict[Key, Any] = {}
        self.next_free = LONG_MIN  # ZENDLONG_MIN: "no integer key yet", next index 0

    def _note(self, key: Key) -> None:
        if isinstance(key, int) and key >= self.next_free:
            self.next_free = key + 1 if key < LONG_MAX else LONG_MAX

    def set(self, key: Key, value: Any) -> None:
        self.items[key] = value
        self._note(key)

    def append(self, value: Any) -> bool:
        """``$a[] = value``; False when PHP cannot (the next key is taken)."""
        key = 0 if self.next_free == LONG_MIN else self.next_free
        if key in self.items:
            return False
        self.items[key] = value
        self._note(key)
        return True


def _key(name: str) -> Key:
    """zend_symtable: a canonical decimal integer string in range becomes an int key."""
    if _NUMERIC_KEY.match(name) and name != "-0":
        n = int(name)
        if LONG_MIN <= n <= LONG_MAX:
            return n
    return name


def _to_python(value: Any) -> Any:
    if not isinstance(value, _PArray):
        return value
    items = {k: _to_python(v) for k, v in value.items.items()}
    if all(k == i for i, k in enumerate(items)):
        return list(items.values())
    return items


def _register(
    track: _PArray, name: str, value: Any, *, cookie: bool, max_nesting: int
) -> None:
    """php_register_variable_ex: store ``value`` under the (array-syntax) ``name``."""
    var = c_str(name).lstrip(" ")
    # ' ' and '.' become '_' up to the first '['
    bracket = var.find("[")
    head = var if bracket < 0 else var[:bracket]
    head = head.replace(" ", "_").replace(".", "_")
    if head == "":
        return
    if bracket < 0:
        _store(track, _key(head), value, cookie=cookie)
        return
    rest = var[bracket:]  # starts with "["
    table = track
    index: str | None = head
    level = 0
    pos = 0  # rest[pos] == "["
    while True:
        level += 1
        if level > max_nesting:
            track.items.pop(_key(head), None)
            return
        start = pos + 1
        probe = start + 1 if rest[start:start + 1] == " " else start
        if rest[probe:probe + 1] == "]":
            new_index: str | None = None
            close = probe
        else:
            close = rest.find("]", probe)
            if close < 0:
                if level == 1:
                    # not an index: the whole name is a plain variable, '[' ' ' '.' -> '_'
                    tail = rest[1:].replace(" ", "_").replace(".", "_").replace("[", "_")
                    index = head + "_" + tail
                break
            new_index = rest[start:close]
        # descend into (or create) the array at `index`
        if index is None:
            child = _PArray()
            if not table.append(child):
                return
        else:
            k = _key(index)
            existing = table.items.get(k)
            if isinstance(existing, _PArray):
                child = existing
            else:
                child = _PArray()
                table.set(k, child)
        table = child
        index = new_index
        pos = close + 1
        if rest[pos:pos + 1] != "[":
            break
    if index is None:
        table.append(value)
    else:
        _store(table, _key(index), value, cookie=cookie and table is track)


def _store(table: _PArray, key: Key, value: Any, *, cookie: bool) -> None:
    # cookies: the first occurrence of a top-level name wins
    if cookie and key in table.items:
        return
    table.set(key, value)


def _too_many(warn: Warn | None, limit: int) -> None:
    if warn is not None:
        warn(
            f"Input variables exceeded {limit}. To increase the limit change max_input_vars in php.ini."
        )


def _as_bytes(s: str | bytes) -> bytes:
    return s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s


def parse_query(
    qs: str | bytes,
    *,
    separators: str = "&",
    max_input_vars: int = MAX_INPUT_VARS,
    max_nesting: int = MAX_INPUT_NESTING_LEVEL,
    warn: Warn | None = None,
) -> dict[Any, Any]:
    """``$_GET`` for the query string ``qs`` (also PHP's ``parse_str()``).

    Split on any character of ``separators`` (``arg_separator.input``), empty pieces
    skipped; names and values form-decoded; the last of a repeated name wins.

    :param warn: receives PHP's "Input variables exceeded" warning (the rest is dropped).
    """
    if not qs:
        return {}
    data = c_str(_decode(_as_bytes(qs))).encode("utf-8", "surrogateescape")
    track = _PArray()
    count = 0
    seps = re.escape(separators.encode())
    for piece in re.split(b"[" + seps + b"]", data) if separators else [data]:
        if not piece:
            continue
        count += 1
        if count > max_input_vars:
            _too_many(warn, max_input_vars)
            break
        name, eq, value = piece.partition(b"=")
        _register(
            track,
            _decode(url_decode(name)),
            _decode(url_decode(value)) if eq else "",
            cookie=False,
            max_nesting=max_nesting,
        )
    return _to_python_top(track)


def _to_python_top(track: _PArray) -> dict[Any, Any]:
    return {k: _to_python(v) for k, v in track.items.items()}


def parse_cookies(
    header: str | bytes,
    *,
    max_input_vars: int = MAX_INPUT_VARS,
    max_nesting: int = MAX_INPUT_NESTING_LEVEL,
    warn: Warn | None = None,
) -> dict[Any, Any]:
    """``$_COOKIE`` for the ``Cookie:`` header (``HTTP_COOKIE``).

    Pairs split on ``;`` (empty ones skipped), leading blanks of names dropped, names not
    decoded, values percent-decoded with ``+`` kept; the first occurrence of a name wins.
    """
    if not header:
        return {}
    data = _as_bytes(header)
    nul = data.find(b"\0")
    if nul >= 0:
        data = data[:nul]
    simple = _plain_cookies(data, max_input_vars)
    if simple is not None:
        return simple
    return _registered_cookies(data, max_input_vars, max_nesting, warn)


#: a cookie name PHP registers as it is: no blank or "." to mangle, no "[" of array
#: syntax, not an integer key
_PLAIN_NAME: Final = re.compile(rb"[A-Za-z_][A-Za-z0-9_-]*\Z")


def _cookie_pairs(data: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """The header's ``(name, "=" or "", value)`` pairs as PHP splits them: on ``;``, empty
    pieces skipped, leading blanks of names dropped, pairs without a name skipped."""
    pairs = []
    for piece in data.split(b";"):
        if not piece:
            continue
        name, eq, value = piece.partition(b"=")
        name = name.lstrip(b" \t\n\r\v\f")
        if name:
            pairs.append((name, eq, value))
    return pairs


def _plain_cookies(data: bytes, max_input_vars: int) -> dict[Any, Any] | None:
    """``$_COOKIE`` of the usual header (``PHPSESSID=...; theme=dark``: plain names)
    without PHP's general registration; None when a pair needs it, or when there are more
    than ``max_input_vars`` pairs (the general path warns)."""
    out: dict[Any, Any] = {}
    count = 0
    for name, eq, value in _cookie_pairs(data):
        if not (name.isalnum() and not 48 <= name[0] <= 57) and _PLAIN_NAME.match(name) is None:
            return None  # (isalnum first: most names are letters and digits, no regex needed)
        count += 1
        key = name.decode("ascii")
        if key not in out:  # the first occurrence of a name wins
            out[key] = _decode(raw_url_decode(value)) if eq else ""
    return out if count <= max_input_vars else None


def _registered_cookies(data: bytes, max_input_vars: int, max_nesting: int, warn: Warn | None) -> dict[Any, Any]:
    """``$_COOKIE`` through PHP's registration of each pair (array syntax, mangled names,
    integer keys, the ``max_input_vars`` warning)."""
    track = _PArray()
    count = 0
    for name, eq, value in _cookie_pairs(data):
        count += 1
        if count > max_input_vars:
            _too_many(warn, max_input_vars)
            break
        _register(
            track,
            _decode(name),
            _decode(raw_url_decode(value)) if eq else "",
            cookie=True,
            max_nesting=max_nesting,
        )
    return _to_python_top(track)


def _parse_post_urlencoded(
    body: bytes, *, max_input_vars: int, max_nesting: int, warn: Warn | None
) -> dict[Any, Any]:
    track = _PArray()
    pieces = body.split(b"&")
    if pieces[-1] == b"":
        pieces.pop()  # nothing after a final "&" (or an empty body)
    for count, piece in enumerate(pieces, 1):
        # main/php_variables.c add_post_vars: every piece counts, even an empty one, and
        # the limit is checked after the variable was stored
        name, eq, value = piece.partition(b"=")
        _register(
            track,
            _decode(url_decode(name)),
            _decode(url_decode(value)) if eq else "",
            cookie=False,
            max_nesting=max_nesting,
        )
        if count > max_input_vars:
            _too_many(warn, max_input_vars)
            break
    return _to_python_top(track)


_PARAM: Final = re.compile(
    r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.S
)


def _header_params(value: str) -> tuple[str, dict[str, str]]:
    main, _, _ = value.partition(";")
    params: dict[str, str] = {}
    for m in _PARAM.finditer(value[len(main):]):
        v = m.group(2).strip()
        if len(v) >= 2 and v[0] == v[-1] == '"':
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        params.setdefault(m.group(1).lower(), v)
    return main.strip().lower(), params


def parse_multipart(
    boundary: str,
    body: bytes,
    *,
    max_input_vars: int = MAX_INPUT_VARS,
    max_nesting: int = MAX_INPUT_NESTING_LEVEL,
    warn: Warn | None = None,
) -> dict[Any, Any]:
    """The plain fields of a ``multipart/form-data`` body, as ``$_POST`` holds them.

    File parts (those with a ``filename``) belong to ``$_FILES`` and are skipped.  Field
    names are taken as sent (no decoding) and go through PHP's name rules.
    """
    track = _PArray()
    count = 0
    for name, filename, _ctype, content in multipart_parts(boundary, body):
        if filename is not None:
            continue
        count += 1
        if count > max_input_vars:
            _too_many(warn, max_input_vars)
            break
        _register(track, name, _decode(content), cookie=False, max_nesting=max_nesting)
    return _to_python_top(track)


def parse_post(
    content_type: str,
    body: bytes,
    *,
    max_input_vars: int = MAX_INPUT_VARS,
    max_nesting: int = MAX_INPUT_NESTING_LEVEL,
    warn: Warn | None = None,
) -> dict[Any, Any]:
    """``$_POST`` for a request body of type ``content_type``.

    ``application/x-www-form-urlencoded`` is decoded like a query string (split on ``&``
    only); ``multipart/form-data`` gives its plain fields (:func:`parse_multipart`); any
    other type gives ``{}`` as in PHP.  Type names compare case-insensitively.
    """
    ctype, _, params = content_type.partition(";")
    ctype = ctype.strip(C_SPACE).lower()
    if ctype == "application/x-www-form-urlencoded":
        return _parse_post_urlencoded(
            body, max_input_vars=max_input_vars, max_nesting=max_nesting, warn=warn
        )
    if ctype == "multipart/form-data":
        _, p = _header_params(content_type)
        boundary = p.get("boundary")
        if not boundary:
            return {}
        return parse_multipart(
            boundary, body, max_input_vars=max_input_vars, max_nesting=max_nesting, warn=warn
        )
    return {}


# -- $_FILES, $_REQUEST, PHP_SELF -------------------------------------------------------------

UPLOAD_ERR_OK: Final = 0
UPLOAD_ERR_INI_SIZE: Final = 1
UPLOAD_ERR_FORM_SIZE: Final = 2
UPLOAD_ERR_PARTIAL: Final = 3
UPLOAD_ERR_NO_FILE: Final = 4
UPLOAD_ERR_NO_TMP_DIR: Final = 6
UPLOAD_ERR_CANT_WRITE: Final = 7
UPLOAD_ERR_EXTENSION: Final = 8


def multipart_parts(boundary: str, body: bytes) -> list[tuple[str, str | None, str, bytes]]:
    """The parts of a ``multipart/form-data`` body, in order: (field name, file name or None
    for a plain field, Content-Type, content).  Parts without a form-data name are skipped."""
    out: list[tuple[str, str | None, str, bytes]] = []
    delim = b"--" + boundary.encode("utf-8", "surrogateescape")
    for chunk in body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        elif chunk.startswith(b"\n"):
            chunk = chunk[1:]
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            head, sep, content = chunk.partition(b"\n\n")
            if not sep:
                continue
        if content.endswith(b"\r\n"):
            content = content[:-2]
        elif content.endswith(b"\n"):
            content = content[:-1]
        name: str | None = None
        filename: str | None = None
        ctype = ""
        for line in _decode(head).replace("\r\n", "\n").split("\n"):
            hname, colon, hvalue = line.partition(":")
            if not colon:
                continue
            low = hname.strip().lower()
            if low == "content-type":
                ctype = hvalue.strip()
            elif low == "content-disposition":
                kind, params = _header_params(hvalue)
                if kind == "form-data":
                    name = params.get("name")
                    filename = params.get("filename")
        if name is not None:
            out.append((name, filename, ctype, content))
    return out


def parse_files(
    parts: list[tuple[str, str | None, str, bytes]],
    store: Callable[[bytes], str | None],
    *,
    upload_max_filesize: int,
    max_file_uploads: int = 20,
    max_nesting: int = MAX_INPUT_NESTING_LEVEL,
) -> dict[Any, Any]:
    """``$_FILES`` for the parts of a multipart body (main/rfc1867.c).

    Each file part gives ``name`` (the base name), ``full_path`` (as sent), ``type``,
    ``tmp_name``, ``error`` and ``size``; ``f[]``/``f[x]`` names put each of those six
    under the array syntax (``$_FILES['f']['name'][0]``).  Error codes as PHP's: an
    empty file name is ``UPLOAD_ERR_NO_FILE``, a file over ``upload_max_filesize`` is
    ``UPLOAD_ERR_INI_SIZE``, over a preceding ``MAX_FILE_SIZE`` field ``UPLOAD_ERR_FORM_SIZE``,
    and ``store(content)`` returning None (no temporary file) ``UPLOAD_ERR_CANT_WRITE``.

    :param store: writes an accepted file's content to a temporary file; returns its path.
    """
    track = _PArray()
    max_file_size = 0
    uploads = 0
    for name, filename, ctype, content in parts:
        if filename is None:
            if name.lower() == "max_file_size":
                max_file_size = strtol_prefix(content)
            continue
        uploads += 1
        if max_file_uploads and uploads > max_file_uploads:
            continue  # "Maximum number of allowable file uploads has been exceeded"
        tmp_name = ""
        size = 0
        if filename == "":
            error = UPLOAD_ERR_NO_FILE
        elif upload_max_filesize > 0 and len(content) > upload_max_filesize:
            error = UPLOAD_ERR_INI_SIZE
        elif max_file_size and len(content) > max_file_size:
            error = UPLOAD_ERR_FORM_SIZE
        else:
            stored = store(content)
            if stored is None:
                error = UPLOAD_ERR_CANT_WRITE
            else:
                error, tmp_name, size = UPLOAD_ERR_OK, stored, len(content)
        base = re.split(r"[/\\]", filename)[-1]
        bracket = name.find("[")
        head, rest = (name, "") if bracket < 0 else (name[:bracket], name[bracket:])
        values: list[tuple[str, Any]] = [
            ("name", base), ("full_path", filename), ("type", ctype if error == UPLOAD_ERR_OK else ""),
            ("tmp_name", tmp_name), ("error", error), ("size", size),
        ]
        for field, value in values:
            _register(track, f"{head}[{field}]{rest}", value, cookie=False, max_nesting=max_nesting + 1)
    return _to_python_top(track)


def strtol_prefix(data: bytes) -> int:
    """The leading decimal integer of ``data`` (C's ``strtol``, 0 when none)."""
    m = re.match(rb"\s*([+-]?\d+)", data)
    return int(m.group(1)) if m else 0


def _as_table(value: Any) -> dict[Any, Any] | None:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return dict(enumerate(value))
    return None


def _merge(dest: dict[Any, Any], src: dict[Any, Any]) -> None:
    # main/php_variables.c php_autoglobal_merge: arrays under the same string key merge,
    # anything else is overwritten
    for key, value in src.items():
        old = dest.get(key)
        a = _as_table(old) if isinstance(key, str) else None
        b = _as_table(value)
        if a is not None and b is not None:
            _merge(a, b)
            dest[key] = _to_python_table(a)
        else:
            dest[key] = value


def _to_python_table(d: dict[Any, Any]) -> Any:
    if all(k == i for i, k in enumerate(d)):
        return list(d.values())
    return d


def merge_request(order: str, sources: dict[str, dict[Any, Any]]) -> dict[Any, Any]:
    """``$_REQUEST``: the superglobals named by ``request_order`` (``"GP"``: $_GET then
    $_POST, later ones winning) merged as PHP merges them.  ``sources`` maps ``G``, ``P``,
    ``C`` to $_GET, $_POST, $_COOKIE; other letters are ignored."""
    out: dict[Any, Any] = {}
    for letter in order.upper():
        src = sources.get(letter)
        if src:
            _merge(out, src)
    return out


def php_self(environ: dict[str, str] | Any) -> str:
    """``$_SERVER['PHP_SELF']`` as php-cgi and php-fpm build it: SCRIPT_NAME + PATH_INFO."""
    return str(environ.get("SCRIPT_NAME", "") or "") + str(environ.get("PATH_INFO", "") or "")
