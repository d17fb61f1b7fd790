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
from typing import Mapping

from ..core.config import SETTINGS, SessionConfig, Warn
from ..core.ini import IniSyntaxError, parse_php_ini
from ..errors import ConfigError

__all__ = ["load_ini_file", "from_ini_file", "default_config", "set_default_config", "log_warning"]

log = logging.getLogger(__name__)

#: the PHP core settings phpsess honours (``memory_limit``), read besides ``session.*``
_CORE = frozenset(s.name for s in SETTINGS.values() if s.core)

_default_config: SessionConfig | None = None


def load_ini_file(path: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Read a php.ini-syntax file and return its ``session.*`` entries (and ``memory_limit``) as raw strings
    (:func:`phpsess.core.ini.parse_php_ini`: PHP's quoting, ``On``/``Off``, ``${NAME}``,
    ``[HOST=]``/``[PATH=]`` sections skipped).

    :param environ: the variables for ``${NAME}`` (default ``os.environ``).
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
    return {k: v for k, v in entries.items() if k.startswith("session.") or k in _CORE}


def from_ini_file(path: str, *, warn: Warn | None = None) -> SessionConfig:
    """A SessionConfig with PHP's defaults overridden by ``path``'s ``session.*`` entries.

    Entries phpsess does not know (``session.cookie_partitioned`` of PHP 8.5, typos) are
    ignored with a logged warning, as PHP ignores unknown ini entries; invalid values raise.

    :param warn: receives PHP's warnings for accepted-but-odd values (default: logged).
    :raises ConfigError: unreadable file, syntax error, or a value PHP would refuse.
    """
    entries = load_ini_file(path)
    known = {k: v for k, v in entries.items() if SessionConfig.canonical(k) is not None}
    for k in entries.keys() - known.keys():
        log.warning("%s: unknown setting %s ignored", path, k)
    return SessionConfig(known, warn=warn if warn is not None else log_warning)


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
