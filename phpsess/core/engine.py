"""EngineConfig: the PHP settings outside ``session.*`` that a ported page relies on (output
buffering, error display and logging, request_order, include_path, uploads), parsed as PHP
8.2 parses them. No I/O.

The defaults are those of php-cgi and php-fpm under Debian's php.ini (php.ini-production):
``output_buffering = 4096``, ``display_errors = Off``, ``log_errors = On``,
``error_reporting = E_ALL & ~E_DEPRECATED & ~E_STRICT``, ``request_order = "GP"``.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Final, Mapping

from .config import parse_bool, parse_long, parse_quantity
from .zend import strval

__all__ = [
    "EngineConfig",
    "ENGINE_SETTINGS",
    "E_ERROR",
    "E_WARNING",
    "E_PARSE",
    "E_NOTICE",
    "E_USER_ERROR",
    "E_USER_WARNING",
    "E_USER_NOTICE",
    "E_STRICT",
    "E_DEPRECATED",
    "E_USER_DEPRECATED",
    "E_ALL",
    "LEVEL_NAMES",
    "parse_error_level",
]

E_ERROR: Final = 1
E_WARNING: Final = 2
E_PARSE: Final = 4
E_NOTICE: Final = 8
E_CORE_ERROR: Final = 16
E_CORE_WARNING: Final = 32
E_COMPILE_ERROR: Final = 64
E_COMPILE_WARNING: Final = 128
E_USER_ERROR: Final = 256
E_USER_WARNING: Final = 512
E_USER_NOTICE: Final = 1024
E_STRICT: Final = 2048
E_RECOVERABLE_ERROR: Final = 4096
E_DEPRECATED: Final = 8192
E_USER_DEPRECATED: Final = 16384
E_ALL: Final = 32767

_CONSTANTS: Final = {name: value for name, value in globals().items() if name.startswith("E_") and isinstance(value, int)}

#: the word PHP puts before a message of each level (main/main.c: php_error_cb)
LEVEL_NAMES: Final[dict[int, str]] = {
    E_ERROR: "Fatal error", E_CORE_ERROR: "Fatal error", E_COMPILE_ERROR: "Fatal error",
    E_USER_ERROR: "Fatal error", E_RECOVERABLE_ERROR: "Recoverable fatal error",
    E_WARNING: "Warning", E_CORE_WARNING: "Warning", E_COMPILE_WARNING: "Warning", E_USER_WARNING: "Warning",
    E_PARSE: "Parse error", E_NOTICE: "Notice", E_USER_NOTICE: "Notice", E_STRICT: "Strict Standards",
    E_DEPRECATED: "Deprecated", E_USER_DEPRECATED: "Deprecated",
}

_TOKEN: Final = re.compile(r"\s*(?:(E_[A-Z_]+)|(\d+)|([&|^~()]))")


def parse_error_level(raw: str) -> int:
    """An ``error_reporting`` value as php.ini writes it: a number, or an expression of
    ``E_*`` constants with ``& | ^ ~`` and parentheses (``E_ALL & ~E_DEPRECATED``).
    An unknown constant counts as 0; what cannot be parsed is read as a number."""
    text = raw.strip()
    if not text:
        return 0
    pos = 0
    tokens: list[str] = []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            return parse_long(raw)
        if m.group(1):
            tokens.append(str(_CONSTANTS.get(m.group(1), 0)))
        else:
            tokens.append(m.group(2) or m.group(3))
        pos = m.end()
    # only integers and & | ^ ~ ( ) are left, whose precedence is the same in Python and
    # in php.ini's grammar (~ before & before ^ before |): Python evaluates it
    try:
        value = eval(" ".join(tokens), {"__builtins__": {}}, {})  # noqa: S307 - digits and operators only
    except (SyntaxError, TypeError, ValueError):
        return parse_long(raw)
    return int(value) if isinstance(value, int) else parse_long(raw)


def _display(raw: str) -> Any:
    # main.c: php_get_display_errors_mode: "on"/"yes"/"true"/"stdout" -> 1, "stderr" -> 2
    low = raw.strip().lower()
    if low == "stderr":
        return 2
    if low in ("on", "yes", "true", "stdout"):
        return 1
    return 1 if low and parse_long(raw) else 0


def _output_buffering(raw: str) -> Any:
    # "On" is 1: a buffer of unlimited size (main.c php_output_activate: size > 1 or 0)
    low = raw.strip().lower()
    if low in ("on", "yes", "true"):
        return 1
    return max(parse_long(raw), 0)


def _quantity(raw: str) -> Any:
    return parse_quantity(raw)[0]


#: name -> (Debian php.ini-production value, parser, may ini_set() change it)
ENGINE_SETTINGS: Final[dict[str, tuple[str, Callable[[str], Any], bool]]] = {
    "output_buffering": ("4096", _output_buffering, False),  # PHP_INI_PERDIR
    "implicit_flush": ("", parse_bool, True),
    "display_errors": ("", _display, True),
    "html_errors": ("1", parse_bool, True),
    "log_errors": ("1", parse_bool, True),
    "error_log": ("", str, True),
    "error_reporting": ("22527", parse_error_level, True),
    "request_order": ("GP", str, False),
    "variables_order": ("GPCS", str, False),
    "include_path": (".:/usr/share/php", str, True),
    "file_uploads": ("1", parse_bool, False),
    "upload_max_filesize": ("2M", _quantity, False),
    "max_file_uploads": ("20", parse_long, False),
    "upload_tmp_dir": ("", str, False),
}


class EngineConfig:
    """PHP's non-session settings for one request: raw strings (``ini_get``) and parsed values.

    :param overrides: ini name -> value, at php.ini level.
    """

    __slots__ = ("_raw", "_parsed", "_owned")

    def __init__(self, overrides: Mapping[str, Any] | None = None, *, _share: EngineConfig | None = None) -> None:
        if _share is not None:  # copy(): the other one's dicts, until either changes
            self._raw: dict[str, str] = _share._raw
            self._parsed: dict[str, Any] = _share._parsed
            self._owned = False
            return
        self._raw = {k: v[0] for k, v in ENGINE_SETTINGS.items()}
        self._parsed = {}
        #: False while this copy still shares its dicts with the one it was copied from
        #: (copied on the first change: most requests never change a setting)
        self._owned = True
        for key, value in (overrides or {}).items():
            self.set(key, value, startup=True)

    @staticmethod
    def knows(name: str) -> bool:
        """True for a setting this class holds."""
        return name in ENGINE_SETTINGS

    def get(self, name: str) -> str | None:
        """The raw string ``ini_get(name)`` returns; None for a setting not held here."""
        return self._raw.get(name)

    def value(self, name: str) -> Any:
        """The parsed value of ``name`` (int for levels and sizes, bool for switches)."""
        try:
            return self._parsed[name]
        except KeyError:
            v = self._parsed[name] = ENGINE_SETTINGS[name][1](self._raw[name])
            return v

    def parse_all(self) -> None:
        """Parse every setting now (copies then start with the parsed values)."""
        for name in ENGINE_SETTINGS:
            self.value(name)

    def set(self, name: str, value: Any, *, startup: bool = False) -> str | None:
        """``ini_set(name, value)``: the old raw string, or None when PHP refuses (an unknown
        name, or a php.ini-only setting outside ``startup``)."""
        entry = ENGINE_SETTINGS.get(name)
        if entry is None or not (startup or entry[2]):
            return None
        old = self._raw[name]
        raw = strval(value)
        if name == "error_reporting" and startup and "E_" in raw:
            raw = str(parse_error_level(raw))  # php.ini's parser evaluates constant expressions
        if not self._owned:
            self._raw = self._raw.copy()
            self._parsed = self._parsed.copy()
            self._owned = True
        self._raw[name] = raw
        self._parsed.pop(name, None)
        return old

    def copy(self) -> EngineConfig:
        """An independent copy (each request gets one): it shares this one's dicts until
        either of them changes a setting (parsing a value only caches what the shared
        raw string gives, so it is not a change)."""
        new = EngineConfig(_share=self)
        self._owned = False  # a later set() here must not show through the copy either
        return new

    def __repr__(self) -> str:
        changed = {k: v for k, v in self._raw.items() if v != ENGINE_SETTINGS[k][0]}
        return f"EngineConfig({changed!r})"
