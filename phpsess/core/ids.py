"""Session ids: generation and the checks PHP applies to them. No I/O.

Randomness is an argument (``random_bytes``), so tests are deterministic.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Callable, Final

if TYPE_CHECKING:
    from .config import SessionConfig

__all__ = [
    "ALPHABET",
    "MAX_SID_LENGTH",
    "bin_to_readable",
    "create_id",
    "is_valid_id",
    "has_forbidden_chars",
    "is_valid_prefix",
]

#: session.c: the alphabet; sid_bits_per_character b uses its first 2**b characters
ALPHABET: Final = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ,-"
#: php_session.h: PS_MAX_SID_LENGTH
MAX_SID_LENGTH: Final = 256

_VALID_ID: Final = re.compile(r"[A-Za-z0-9,\-]{1,256}\Z")
# session.c: php_session_initialize drops ids containing any of these (PS_..._CHARS)
_FORBIDDEN: Final = re.compile(r"[\r\n\t <>'\"\\]")


def bin_to_readable(data: bytes, length: int, bits: int) -> str:
    """Turn random bytes into ``length`` id characters, ``bits`` bits each, as PHP packs them.

    The bytes are consumed as a little-endian bit stream (session.c: bin_to_readable):
    character ``i`` is bits ``[bits*i, bits*i + bits)`` of that stream.
    """
    needed = (length * bits + 7) // 8
    if len(data) < needed:
        raise IndexError("not enough random bytes for the id")
    if bits == 4:
        # each byte gives its low nibble, then its high nibble: hex() of the bytes
        # with their nibbles swapped
        return data[: (length + 1) // 2].translate(_SWAP_NIBBLES).hex()[:length]
    n = int.from_bytes(data[:needed], "little")
    mask = (1 << bits) - 1
    return "".join([ALPHABET[(n >> shift) & mask] for shift in range(0, length * bits, bits)])


#: byte -> the byte with its two nibbles swapped
_SWAP_NIBBLES: Final = bytes((b >> 4) | ((b & 15) << 4) for b in range(256))


def create_id(
    cfg: "SessionConfig", random_bytes: Callable[[int], bytes] = secrets.token_bytes
) -> str:
    """A new session id of ``cfg.sid_length`` characters of ``cfg.sid_bits_per_character`` bits.

    Reads ``sid_length`` random bytes, as PHP 8.2 does, and packs them with
    :func:`bin_to_readable`.
    """
    length = cfg.sid_length
    return bin_to_readable(random_bytes(length), length, cfg.sid_bits_per_character)


def is_valid_id(sid: str) -> bool:
    """The files handler's check (session.c: php_session_valid_key): ``[A-Za-z0-9,-]{1,256}``.

    PHP looks at the id as a C string; ``session_id()`` already cuts an id at a NUL byte,
    so here an id that still contains one is simply invalid.
    """
    return _VALID_ID.match(sid) is not None


def has_forbidden_chars(sid: str) -> bool:
    """True when session_start() silently discards ``sid`` (CR, LF, TAB, space, ``<>'"\\``).

    As PHP's ``strpbrk``, only the part before a NUL byte is looked at.
    """
    nul = sid.find("\0")
    return _FORBIDDEN.search(sid if nul < 0 else sid[:nul]) is not None


def is_valid_prefix(prefix: str) -> bool:
    """session_create_id()'s prefix check: empty, or a valid id."""
    return prefix == "" or is_valid_id(prefix)
