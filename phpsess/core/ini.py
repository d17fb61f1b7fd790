"""PHP's ini file syntax, scanned as ``Zend/zend_ini_scanner.l`` scans it. No I/O.

One scanner serves php.ini files (``session.*`` settings, :func:`parse_php_ini`) and
php-fpm's configuration files, which use the same syntax (:func:`scan_ini`):

* ``;`` comments, ``[sections]``, ``key = value`` and bare ``key`` lines, ``key[offset]``;
* ``"double"`` quotes (``\\"``, ``\\\\``, ``\\$`` escapes), ``'single'`` raw quotes,
  adjacent parts concatenated (``"a" b`` -> ``a b``), trailing blanks dropped;
* whole values ``On``/``yes``/``true`` -> ``"1"`` and ``Off``/``no``/``false``/``none``/
  ``null`` -> ``""`` (any case);
* ``${NAME}`` -> what ``lookup(NAME)`` says (php.ini: an earlier entry, else the
  environment, else ``""``).

PHP's ini expressions (``|``, ``&``, ``~``, ``!``, ``^``, parentheses) are not
evaluated: in values of keys the caller cares about they are a syntax error, in
others their text is the value (``E_ALL & ~E_NOTICE``).  Constant names are kept literally.  The scanner is
linear in the size of the text.
"""

from __future__ import annotations

import re
from typing import Callable, Iterator, Mapping, NamedTuple

__all__ = ["IniEntry", "IniSyntaxError", "scan_ini", "parse_php_ini"]

_VALUE_STOP = set('$= \t\n\r;&|^~()!"\'\0')
_OPERATORS = set("&|^~()!")
_BOOL_VALUE = re.compile(r"(true|on|yes|false|off|no|none|null)(?![^$= \t\n\r;&|^~()!\"'\0]|\$(?!\{))", re.I)
_NAME_CHARS = re.compile(r"[^=\n\r\t;&|^$~(){}!\"\[\]\0]+")


class IniSyntaxError(ValueError):
    """Text PHP's ini scanner refuses; ``line`` is where (1-based)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


class IniEntry(NamedTuple):
    """One ``key = value`` (or bare ``key``) line of an ini file."""

    section: str | None  # the last ``[section]`` above it, None before any
    key: str  # ``name`` or ``name[offset]``
    value: str | None  # None for a bare key
    line: int  # 1-based line of the key


class _Scanner:
    """A php.ini scanner for plain ``key = value`` lines, following zend_ini_scanner.l."""

    def __init__(self, text: str, lookup: Callable[[str], str], expressions: Callable[[str], bool]) -> None:
        self.s = text
        self.i = 0
        self.line = 1
        self.lookup = lookup
        self.refuse_expression = expressions

    def error(self, what: str) -> IniSyntaxError:
        return IniSyntaxError(f"syntax error, unexpected {what}", self.line)

    def peek(self, k: int = 0) -> str:
        return _ch(self.s, self.i + k)

    def advance(self, n: int = 1) -> None:
        for c in self.s[self.i:self.i + n]:
            if c == "\n":
                self.line += 1
        self.i += n

    def _line_end(self) -> int:
        end = self.s.find("\n", self.i)
        return len(self.s) if end < 0 else end

    def variable(self) -> str:
        """``${NAME}`` at the cursor: an earlier ini entry, else the environment, else ""."""
        end = self.s.find("}", self.i + 2, self._line_end())
        if end < 0:
            raise self.error("end of line, expecting '}'")
        name = self.s[self.i + 2:end]
        self.advance(end + 1 - self.i)
        return self.lookup(name)

    def double_quoted(self) -> str:
        """The body of a ``"..."`` string: ``\\"``, ``\\\\``, ``\\$`` unescaped, ``${VAR}`` expanded."""
        self.advance()
        out: list[str] = []
        while True:
            c = self.peek()
            if self.i >= len(self.s):
                raise self.error("end of file, expecting '\"'")
            if c == '"':
                self.advance()
                return "".join(out)
            if c == "\\":
                nxt = self.peek(1)
                if nxt in '"\\$' and self.i + 1 < len(self.s):
                    out.append(nxt)
                    self.advance(2)
                    continue
                out.append(c)
                self.advance()
                continue
            if c == "$" and self.peek(1) == "{":
                out.append(self.variable())
                continue
            out.append(c)
            self.advance()

    def value(self, key: str) -> str:
        """Everything after ``=`` up to the end of line or a ``;`` comment."""
        while self.peek() in " \t" and self.i < len(self.s):
            self.advance()
        m = _BOOL_VALUE.match(self.s, self.i)
        if m:
            # a whole-value keyword: anything but a comment after it is a syntax error
            self.advance(m.end(1) - self.i)
            word = m.group(1).lower()
            self.rest_of_line()
            return "1" if word in ("true", "on", "yes") else ""
        parts: list[tuple[str, bool]] = []  # (text, is a run of blanks)
        while self.i < len(self.s):
            c = self.peek()
            if c in "\r\n;":
                break
            if c in " \t":
                j = self.i
                while j < len(self.s) and self.s[j] in " \t":
                    j += 1
                parts.append((self.s[self.i:j], True))
                self.advance(j - self.i)
                continue
            if c == '"':
                # the scanner's {TABS_AND_SPACES}*["] and ["]{TABS_AND_SPACES}*: blanks
                # around a double-quoted part are dropped (not around other parts)
                while parts and parts[-1][1]:
                    parts.pop()
                parts.append((self.double_quoted(), False))
                while self.i < len(self.s) and self.peek() in " \t":
                    self.advance()
            elif c == "'":
                end = self.s.find("'", self.i + 1)
                if end < 0:
                    raise self.error("end of file, expecting \"'\"")
                parts.append((self.s[self.i + 1:end], False))
                self.advance(end + 1 - self.i)
            elif c == "$" and self.peek(1) == "{":
                parts.append((self.variable(), False))
            elif c in _OPERATORS:
                if not self.refuse_expression(key):
                    # an expression (error_reporting = E_ALL & ~E_NOTICE): kept as its text,
                    # for the caller to evaluate (phpsess.core.engine.parse_error_level)
                    start = self.i
                    while self.i < len(self.s) and self.peek() not in "\r\n;":
                        self.advance()
                    parts.append((self.s[start:self.i].rstrip(" \t"), False))
                    break
                raise self.error(f"'{c}' (ini expressions are not supported by phpsess)")
            elif c == "=":
                raise self.error("'='")
            elif c == "\0":
                raise self.error("NUL byte")
            else:
                j = self.i + 1
                while j < len(self.s) and (self.s[j] not in _VALUE_STOP or (
                        self.s[j] == "$" and _ch(self.s, j + 1) != "{")):
                    j += 1
                parts.append((self.s[self.i:j], False))
                self.advance(j - self.i)
        # blanks before the end of line or a comment are not part of the value
        while parts and parts[-1][1]:
            parts.pop()
        self.rest_of_line()
        return "".join(text for text, _ in parts)

    def rest_of_line(self) -> None:
        """Skip blanks and a ``;`` comment; anything else there is a syntax error."""
        while self.i < len(self.s) and self.peek() in " \t":
            self.advance()
        if self.peek() == ";":
            while self.i < len(self.s) and self.peek() not in "\r\n":
                self.advance()
        if self.i < len(self.s) and self.peek() not in "\r\n":
            raise self.error(f"'{self.peek()}'")

    def entries(self) -> Iterator[IniEntry]:
        """Every entry, as scanned."""
        section: str | None = None
        s = self.s
        while self.i < len(s):
            c = self.peek()
            if c in " \t\r\n":
                self.advance()
                continue
            if c == ";":
                while self.i < len(s) and self.peek() not in "\r\n":
                    self.advance()
                continue
            if c == "[":
                end = s.find("]", self.i, self._line_end())
                if end < 0:
                    raise self.error("end of line, expecting ']'")
                section = s[self.i + 1:end].strip(" \t")
                self.advance(end + 1 - self.i)
                self.rest_of_line()
                continue
            m = _NAME_CHARS.match(s, self.i)
            if not m:
                raise self.error(f"'{c}'")
            key = m.group().rstrip(" ")
            line = self.line
            self.advance(m.end() - self.i)
            while self.peek() in " \t" and self.i < len(s):
                self.advance()
            if self.peek() == "[":  # key[offset] = value: arrays, never session.*
                end = s.find("]", self.i)
                if end < 0:
                    raise self.error("end of line, expecting ']'")
                key += s[self.i:end + 1]
                self.advance(end + 1 - self.i)
                while self.peek() in " \t" and self.i < len(s):
                    self.advance()
            if self.peek() == "=":
                self.advance()
                yield IniEntry(section, key, self.value(key), line)
            else:
                self.rest_of_line()
                yield IniEntry(section, key, None, line)


def _ch(s: str, i: int) -> str:
    """``s[i]``, or NUL past the end (C reads the terminator)."""
    return s[i] if i < len(s) else "\0"


def scan_ini(
    text: str,
    lookup: Callable[[str], str],
    *,
    strict: Callable[[str], bool] = lambda key: True,
) -> Iterator[IniEntry]:
    """Every entry of ``text``, in order.

    :param lookup: the value of ``${NAME}``.
    :param strict: True for the keys whose values may not hold an ini expression
        (a syntax error there); other keys' expressions are skipped (value ``""``).
    :raises IniSyntaxError: where PHP's scanner stops with a syntax error.
    """
    return _Scanner(text, lookup, strict).entries()


def parse_php_ini(text: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The entries of a php.ini-syntax ``text`` as PHP's startup reads them: ``{key: value}``.

    ``${NAME}`` is an earlier entry of the text, else ``environ[NAME]``, else ``""``.
    Plain ``[sections]`` are ignored as PHP does; entries under ``[HOST=...]`` and
    ``[PATH=...]`` apply only to some requests in PHP and are skipped -- as is, like in
    PHP, every entry after such a section, even under a later ``[PHP]``.  The last of
    repeated keys wins; bare keys are left out.  Only ``session.*`` values are held to
    the no-expression rule (others, like ``error_reporting = E_ALL & ~E_NOTICE``, are
    not phpsess's business).

    :raises IniSyntaxError: with the line, where PHP's scanner would stop.
    """
    seen: dict[str, str] = {}

    def lookup(name: str) -> str:
        if name in seen:
            return seen[name]
        return environ.get(name, "")

    per_request = False
    for entry in scan_ini(text, lookup, strict=lambda key: key.startswith("session.")):
        if entry.value is None:
            continue
        # main/php_ini.c: a section named PATH... or HOST... collects the entries for
        # some requests only -- and so does every entry after it, whatever section
        # follows (the active section is never reset)
        if entry.section is not None and entry.section[:4].upper() in ("HOST", "PATH"):
            per_request = True
        if per_request:
            continue
        seen[entry.key] = entry.value
    return seen
