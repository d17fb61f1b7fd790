"""SessionConfig: the ``session.*`` ini settings, parsed and checked as PHP 8.2 does. No I/O
except :func:`load_ini_file`, which reads a php.ini-syntax file.

Each setting is kept twice: the raw string that ``ini_get()`` returns, and a
typed attribute named like the ini setting without ``session.`` (dots become
underscores: ``session.upload_progress.enabled`` -> ``upload_progress_enabled``).
"""

from __future__ import annotations

import copy as _copy
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .errors import ConfigError

__all__ = ["SessionConfig", "SETTINGS", "Setting", "load_ini_file", "from_ini_file", "ini_string"]


@dataclass(frozen=True)
class Setting:
    """One ``session.*`` ini entry: its default, how it parses, where it may be changed."""

    name: str  # without the "session." prefix
    default: str
    kind: str  # "bool" | "int" | "str" | "float"
    mode: str = "ALL"  # "ALL" | "PERDIR"
    phpsess_only: bool = False  # an extension of phpsess, unknown to PHP

    @property
    def attr(self) -> str:
        """The SessionConfig attribute that holds the parsed value."""
        return self.name.replace(".", "_")


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting("save_handler", "files", "str"),
        Setting("save_path", "", "str"),
        Setting("name", "PHPSESSID", "str"),
        Setting("auto_start", "0", "bool", "PERDIR"),
        Setting("gc_probability", "1", "int"),
        Setting("gc_divisor", "100", "int"),
        Setting("gc_maxlifetime", "1440", "int"),
        Setting("serialize_handler", "php", "str"),
        Setting("cookie_lifetime", "0", "int"),
        Setting("cookie_path", "/", "str"),
        Setting("cookie_domain", "", "str"),
        Setting("cookie_secure", "0", "bool"),
        Setting("cookie_httponly", "0", "bool"),
        Setting("cookie_samesite", "", "str"),
        Setting("use_cookies", "1", "bool"),
        Setting("use_only_cookies", "1", "bool"),
        Setting("use_strict_mode", "0", "bool"),
        Setting("referer_check", "", "str"),
        Setting("cache_limiter", "nocache", "str"),
        Setting("cache_expire", "180", "int"),
        Setting("use_trans_sid", "0", "bool"),
        Setting("sid_length", "32", "int"),
        Setting("sid_bits_per_character", "4", "int"),
        Setting("lazy_write", "1", "bool"),
        Setting("trans_sid_tags", "a=href,area=href,frame=src,form=", "str"),
        Setting("trans_sid_hosts", "", "str"),
        Setting("upload_progress.enabled", "1", "bool", "PERDIR"),
        Setting("upload_progress.cleanup", "1", "bool", "PERDIR"),
        Setting("upload_progress.prefix", "upload_progress_", "str", "PERDIR"),
        Setting("upload_progress.name", "PHP_SESSION_UPLOAD_PROGRESS", "str", "PERDIR"),
        Setting("upload_progress.freq", "1%", "str", "PERDIR"),
        Setting("upload_progress.min_freq", "1", "float", "PERDIR"),
        # phpsess extensions (documented in conf/phpsess.ini and docs/compatibility.md)
        Setting("lock_timeout", "0", "float", phpsess_only=True),
        Setting("lock_max_waiters", "0", "int", phpsess_only=True),
        Setting("lock_wait_log_ms", "1000", "int", phpsess_only=True),
        Setting("lazy_start", "0", "bool", phpsess_only=True),
        Setting("concurrency", "lock", "str", phpsess_only=True),
    ]
}


def ini_string(value: Any) -> str:
    """Convert a value passed to ``ini_set()`` to the string PHP stores.

    PHP converts ``true`` to ``"1"``, ``false`` and ``null`` to ``""``, numbers
    to their decimal text.
    """
    if value is True:
        return "1"
    if value is False or value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, float):
        r = repr(value)
        return r[:-2] if r.endswith(".0") else r
    return str(value)


def parse_bool(raw: str) -> bool:
    """PHP's ``zend_ini_parse_bool``: on/yes/true (any case) or a non-zero leading integer."""
    low = raw.strip().lower()
    if low in ("on", "yes", "true"):
        return True
    return parse_long(raw) != 0


def parse_long(raw: str) -> int:
    """C ``strtol`` base 10 on the leading part of ``raw``: garbage gives 0."""
    s = raw.strip()
    i = 0
    if i < len(s) and s[i] in "+-":
        i += 1
    j = i
    while j < len(s) and s[j].isdigit():
        j += 1
    if j == i:
        return 0
    return int(s[:j])


def parse_float(raw: str) -> float:
    """C ``strtod`` on the leading part of ``raw``: garbage gives 0.0."""
    s = raw.strip()
    for end in range(len(s), 0, -1):
        try:
            return float(s[:end])
        except ValueError:
            continue
    return 0.0


_SERIALIZE_HANDLERS = ("php", "php_serialize", "php_binary")
_SAVE_HANDLERS = ("files", "redis", "memory", "user")


class SessionConfig:
    """The ``session.*`` settings of one request, typed, with PHP's raw strings kept."""

    save_handler: str
    save_path: str
    name: str
    auto_start: bool
    gc_probability: int
    gc_divisor: int
    gc_maxlifetime: int
    serialize_handler: str
    cookie_lifetime: int
    cookie_path: str
    cookie_domain: str
    cookie_secure: bool
    cookie_httponly: bool
    cookie_samesite: str
    use_cookies: bool
    use_only_cookies: bool
    use_strict_mode: bool
    referer_check: str
    cache_limiter: str
    cache_expire: int
    use_trans_sid: bool
    sid_length: int
    sid_bits_per_character: int
    lazy_write: bool
    trans_sid_tags: str
    trans_sid_hosts: str
    upload_progress_enabled: bool
    upload_progress_cleanup: bool
    upload_progress_prefix: str
    upload_progress_name: str
    upload_progress_freq: str
    upload_progress_min_freq: float
    lock_timeout: float
    lock_max_waiters: int
    lock_wait_log_ms: int
    lazy_start: bool
    concurrency: str

    def __init__(self, overrides: Mapping[str, Any] | None = None) -> None:
        """Start from PHP 8.2's compiled defaults, then apply ``overrides``.

        ``overrides`` maps ini names (with or without ``session.``) to values;
        an invalid value raises :class:`ConfigError`.  PERDIR settings may be
        given here (this is php.ini level).
        """
        self._raw: dict[str, str] = {}
        for s in SETTINGS.values():
            self._raw[s.name] = s.default
            setattr(self, s.attr, self._parse(s, s.default))
        if overrides:
            for key, value in overrides.items():
                self.set(key, value, startup=True)

    @staticmethod
    def canonical(name: str) -> str | None:
        """``"session.gc_maxlifetime"`` or ``"gc_maxlifetime"`` -> ``"gc_maxlifetime"``; None if unknown."""
        key = name[8:] if name.startswith("session.") else name
        return key if key in SETTINGS else None

    @staticmethod
    def _parse(s: Setting, raw: str) -> Any:
        if s.kind == "bool":
            return parse_bool(raw)
        if s.kind == "int":
            return parse_long(raw)
        if s.kind == "float":
            return parse_float(raw)
        return raw

    def get(self, name: str) -> str | None:
        """The raw string ``ini_get("session.NAME")`` returns; None for an unknown setting."""
        key = self.canonical(name)
        return None if key is None else self._raw[key]

    def set(
        self,
        name: str,
        value: Any,
        *,
        startup: bool = False,
        warn: Callable[[str], None] | None = None,
    ) -> str:
        """Set one setting as ``ini_set()`` would; return the previous raw string.

        :param startup: php.ini level (PERDIR settings allowed).
        :param warn: receives PHP's non-fatal warning texts (value accepted anyway).
        :raises ConfigError: the value is refused; the setting keeps its old value.
        """
        key = self.canonical(name)
        if key is None:
            raise ConfigError(name, value, f'Unknown session setting "{name}"')
        s = SETTINGS[key]
        if s.mode == "PERDIR" and not startup:
            raise ConfigError(name, value, f'Setting "session.{key}" can only be set in php.ini')
        raw = ini_string(value)
        parsed = self._validate(s, raw, warn)
        old = self._raw[key]
        self._raw[key] = raw
        setattr(self, s.attr, parsed)
        return old

    def _validate(self, s: Setting, raw: str, warn: Callable[[str], None] | None) -> Any:
        key = s.name
        if "\0" in raw and key in ("save_path", "name"):
            raise ConfigError(key, raw, f"session.{key} must not contain any null bytes")
        if key == "save_handler":
            low = raw.lower()
            if low == "user":
                raise ConfigError(key, raw, 'Session save handler "user" cannot be set by ini_set()')
            if low not in _SAVE_HANDLERS:
                raise ConfigError(key, raw, f'Session save handler "{raw}" cannot be found')
            return low
        if key == "serialize_handler":
            low = raw.lower()
            if low not in _SERIALIZE_HANDLERS:
                raise ConfigError(key, raw, f'Serialization handler "{raw}" cannot be found')
            return low
        if key == "name":
            stripped = raw.strip()
            if raw == "" or _is_numeric(stripped):
                raise ConfigError(key, raw, f'session.name "{raw}" cannot be numeric or empty')
            return raw
        if key == "cookie_lifetime":
            v = parse_long(raw)
            if v < 0:
                raise ConfigError(key, raw, "CookieLifetime cannot be negative")
            return v
        if key == "sid_length":
            if not raw.strip().lstrip("+-").isdigit() or not 22 <= int(raw) <= 256:
                raise ConfigError(
                    key, raw, 'session.configuration "session.sid_length" must be between 22 and 256'
                )
            return int(raw)
        if key == "sid_bits_per_character":
            if not raw.strip().lstrip("+-").isdigit() or not 4 <= int(raw) <= 6:
                raise ConfigError(
                    key, raw, 'session.configuration "session.sid_bits_per_character" must be between 4 and 6'
                )
            return int(raw)
        if key == "concurrency":
            low = raw.lower()
            if low not in ("lock", "merge"):
                raise ConfigError(key, raw, 'session.concurrency must be "lock" or "merge"')
            return low
        if key == "lock_timeout":
            v = parse_float(raw)
            if v < 0:
                raise ConfigError(key, raw, "session.lock_timeout cannot be negative")
            return v
        return self._parse(s, raw)

    def copy(self) -> SessionConfig:
        """An independent copy (each request gets one, so ini_set never leaks)."""
        return _copy.copy(self)

    def __copy__(self) -> SessionConfig:
        new = SessionConfig.__new__(SessionConfig)
        new.__dict__.update(self.__dict__)
        new._raw = dict(self._raw)
        return new

    def as_ini(self) -> dict[str, str]:
        """All settings as ``{"session.NAME": raw}``, in PHP's order."""
        return {f"session.{k}": v for k, v in self._raw.items()}

    def __repr__(self) -> str:
        changed = {k: v for k, v in self._raw.items() if v != SETTINGS[k].default}
        return f"SessionConfig({changed!r})"


def _is_numeric(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return s.strip() != "" and s.lower() not in ("inf", "nan", "infinity", "-inf", "+inf")


def load_ini_file(path: str) -> dict[str, str]:
    """Read a php.ini-syntax file and return its ``session.*`` entries as raw strings.

    Sections are ignored (PHP applies ``[PHP]`` and host sections alike);
    ``;`` starts a comment; values may be double-quoted; ``On``/``Off``/
    ``yes``/``no``/``none`` become ``"1"``/``""`` as PHP's ini scanner does.
    """
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if not text or text.startswith((";", "#", "[")):
                continue
            if "=" not in text:
                raise ConfigError(path, text, f"syntax error in {path} on line {lineno}")
            key, _, value = text.partition("=")
            key = key.strip()
            value = value.strip()
            if value.startswith('"'):
                end = value.find('"', 1)
                value = value[1:end] if end > 0 else value[1:]
            else:
                value = value.split(";", 1)[0].strip()
                low = value.lower()
                if low in ("on", "yes", "true"):
                    value = "1"
                elif low in ("off", "no", "false", "none"):
                    value = ""
            if key.startswith("session."):
                out[key] = value
    return out


def from_ini_file(path: str) -> SessionConfig:
    """A SessionConfig with PHP's defaults overridden by ``path``'s ``session.*`` entries."""
    return SessionConfig(load_ini_file(path))
