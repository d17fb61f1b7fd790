"""The process-wide session settings, php.ini level, that every request starts from.
Reads a php.ini-syntax file and the environment (``$PHPSESS_INI``, ``${VAR}`` in the file).

Each :class:`~phpsess.session.request.Request` copies :func:`default_config`, so
``ini_set()`` changes only its own copy, as in PHP.  The runtimes set it from
``--ini FILE`` (:func:`set_default_config`); without that, the first request reads
``$PHPSESS_INI`` when it is set, else starts from PHP's defaults.
"""

from __future__ import annotations

import logging
import os
from typing import Final, Mapping

from ..core.config import SETTINGS, SessionConfig, Warn
from ..core.engine import EngineConfig
from ..core.ini import IniSyntaxError, parse_php_ini
from ..errors import ConfigError

__all__ = [
    "CORE_SETTINGS",
    "load_ini_file",
    "from_ini_file",
    "default_config",
    "set_default_config",
    "log_warning",
    "default_engine",
    "set_default_engine",
    "INI_PREFIXES",
]

log: Final = logging.getLogger(__name__)

#: the PHP core settings phpsess honours (``memory_limit``), read besides ``session.*``
_CORE: Final = frozenset(s.name for s in SETTINGS.values() if s.core)

_default_config: SessionConfig | None = None
_default_engine: EngineConfig | None = None


#: the ini names phpsess reads from a php.ini: the session module's, and the session
#: settings of the extensions whose save handlers it has (php-memcached)
INI_PREFIXES: Final = ("session.", "memcached.sess_")

#: the PHP core (not ``session.*``) settings a SessionConfig holds
CORE_SETTINGS: Final = ("serialize_precision",)


def load_ini_file(
    path: str, environ: Mapping[str, str] | None = None, *,
    prefix: str | tuple[str, ...] | None = INI_PREFIXES,
) -> dict[str, str]:
    """Read a php.ini-syntax file and return its ``session.*`` and ``memcached.sess_*``
    entries and ``memory_limit`` (``prefix``; None: every entry) as raw strings
    (:func:`phpsess.core.ini.parse_php_ini`: PHP's quoting, ``On``/``Off``, ``${NAME}``,
    ``[HOST=]``/``[PATH=]`` sections skipped).

    :param environ: the variables for ``${NAME}`` (default ``os.environ``).
    :param prefix: the entries kept (None: all of them).
    :raises ConfigError: the file cannot be read or has a syntax error (with its line).
    """
    env = os.environ if environ is None else environ
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8", "surrogateescape")
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read {path}: {exc.strerror or exc}", cause=exc)
    try:
        entries = parse_php_ini(text, env)
    except IniSyntaxError as exc:
        raise ConfigError(path, None, f"{exc} in {path} on line {exc.line}", cause=exc)
    if prefix is None:
        return dict(entries)
    return {k: v for k, v in entries.items() if k.startswith(prefix) or k in _CORE}


def from_ini_file(path: str, *, warn: Warn | None = None) -> SessionConfig:
    """A SessionConfig with PHP's defaults overridden by ``path``'s ``session.*`` (and
    ``memcached.sess_*``) entries.

    Entries phpsess does not know (``session.cookie_partitioned`` of PHP 8.5, typos) are
    ignored with a logged warning, as PHP ignores unknown ini entries; a value PHP refuses
    keeps the default with PHP's startup warning (:meth:`SessionConfig.set_at_startup`).
    ``serialize_precision`` (:data:`CORE_SETTINGS`) is read too.

    :param warn: receives PHP's warnings for accepted-but-odd values (default: logged).
    :raises ConfigError: unreadable file or syntax error.
    """
    entries = load_ini_file(path, prefix=(*INI_PREFIXES, *CORE_SETTINGS))
    report = warn if warn is not None else log_warning
    cfg = SessionConfig()
    for key, value in entries.items():
        if key == "serialize_precision":
            try:
                cfg.set_serialize_precision(value)
            except ConfigError:
                pass  # PHP keeps its default
        elif SessionConfig.canonical(key) is None:
            log.warning("%s: unknown setting %s ignored", path, key)
        else:
            # PHP's startup: a refused value warns and keeps the default; an unknown
            # save or serialize handler disables the session (session_start() says so)
            cfg.set_at_startup(key, value, warn=report)
    return cfg


def log_warning(message: str) -> None:
    """A ``warn`` callback for settings read outside a request: PHP's text, logged."""
    log.warning("%s", message)


def default_config() -> SessionConfig:
    """The process-wide settings every new request copies (php.ini level).

    Read once from ``$PHPSESS_INI`` when set, else PHP's defaults.
    """
    global _default_config
    if _default_config is None:
        path = os.environ.get("PHPSESS_INI")
        _default_config = from_ini_file(path) if path else SessionConfig()
    return _default_config


def set_default_config(cfg: SessionConfig) -> None:
    """Replace the process-wide settings (``--ini FILE`` of the runtimes)."""
    global _default_config
    _default_config = cfg


def default_engine() -> EngineConfig:
    """The process-wide engine settings (``output_buffering``, ``display_errors``...) every
    new request copies: the entries of ``$PHPSESS_INI`` that phpsess knows outside
    ``session.*``, over Debian's php.ini values (:mod:`phpsess.core.engine`)."""
    global _default_engine
    if _default_engine is None:
        path = os.environ.get("PHPSESS_INI")
        entries = load_ini_file(path, prefix=None) if path else {}
        _default_engine = EngineConfig({k: v for k, v in entries.items() if EngineConfig.knows(k)})
        _default_engine.parse_all()  # each request's copy starts with the parsed values
    return _default_engine


def set_default_engine(cfg: EngineConfig | None) -> None:
    """Replace the process-wide engine settings (None: read ``$PHPSESS_INI`` again on next use)."""
    global _default_engine
    _default_engine = cfg
