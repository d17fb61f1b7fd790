"""PHP's language constructs that a ported page needs as functions: ``include``,
``include_once``, ``require``, ``require_once`` and ``exit``/``die``.  Reads (stat + read)
the files it includes; compiled code is cached and checked against the file's mtime and
size at every include, as opcache does with ``validate_timestamps=1``.

An include runs the file *per request*, in the including script's globals, as PHP runs an
included file in the including scope -- unlike ``import``, which runs a module once per
process (in a pool worker: once for all the requests it will ever serve)::

    import phpsess
    phpsess.require_once("auth.py")     # runs auth.py's session_start() at every request
    phpsess.include("header.py")        # its names land in this script's globals
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any, NoReturn

from .errors import PHPError
from .php import report
from .session.context import current_request

__all__ = ["include", "include_once", "require", "require_once", "exit", "die", "get_included_files"]

# path -> (st_mtime_ns, st_size, code)
_code_cache: dict[str, tuple[int, int, types.CodeType]] = {}


def _compile(path: str, st: os.stat_result) -> types.CodeType:
    hit = _code_cache.get(path)
    if hit is not None and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
        return hit[2]
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        source = f.read()
    code = compile(source, path, "exec", dont_inherit=True)
    _code_cache[path] = (st.st_mtime_ns, st.st_size, code)
    return code


def _candidates(name: str, including: str | None, include_path: str) -> list[str]:
    """Where PHP looks for ``name`` (main/fopen_wrappers.c php_resolve_path): an absolute
    path as is; ``./x`` and ``../x`` from the working directory; anything else along
    ``include_path`` (relative entries from the working directory), then in the including
    script's directory, then in the working directory."""
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    if os.path.isabs(name):
        return [name]
    if name.startswith(("./", "../")) or name in (".", ".."):
        return [os.path.join(cwd, name)]
    out = [os.path.join(cwd if entry == "." else os.path.join(cwd, entry), name)
           for entry in include_path.split(os.pathsep) if entry]
    if including:
        out.append(os.path.join(os.path.dirname(including), name))
    out.append(os.path.join(cwd, name))
    return out


def _run(construct: str, name: Any, once: bool, required: bool, frame: Any) -> Any:
    path_name = os.fspath(name)
    if isinstance(path_name, bytes):
        path_name = path_name.decode("utf-8", "surrogateescape")
    req = current_request()
    include_path = req.engine.get("include_path") or ""
    including = frame.f_code.co_filename if frame is not None else None
    error: OSError | None = None
    for candidate in _candidates(path_name, including, include_path):
        try:
            st = os.stat(candidate)
        except OSError as exc:
            error = error or exc
            continue
        real = os.path.realpath(candidate)
        if once and real in req.included_files:
            return True
        try:
            code = _compile(real, st)
        except IsADirectoryError as exc:
            error = exc
            break
        except OSError as exc:
            error = exc
            break
        if real not in req.included_files:
            req.included_files.append(real)
        g = frame.f_globals if frame is not None else sys.modules["__main__"].__dict__
        missing = object()
        before = g.get("__file__", missing)
        g["__file__"] = real  # PHP's __FILE__ is the included file while it runs
        try:
            exec(code, g)
        finally:
            if before is missing:
                g.pop("__file__", None)
            else:
                g["__file__"] = before
        return 1
    reason = (error.strerror if error is not None and error.strerror else "No such file or directory")
    if isinstance(error, IsADirectoryError):
        reason = "Failed to open stream"  # PHP: "read of 8192 bytes failed with errno=21 Is a directory"
    report(None, f"{construct}({path_name}): Failed to open stream: {reason}")
    if required:
        raise PHPError(f"Failed opening required '{path_name}' (include_path='{include_path}')")
    report(construct, f"Failed opening '{path_name}' for inclusion (include_path='{include_path}')")
    return False


def include(path: Any) -> Any:
    """PHP's ``include``: run the file now, in the caller's globals; 1, or False with PHP's
    two warnings when it cannot be opened.  ``path`` is found as PHP finds it
    (``include_path``, then the including script's directory, then the working directory)."""
    return _run("include", path, False, False, sys._getframe(1))


def include_once(path: Any) -> Any:
    """PHP's ``include_once``: as :func:`include`, but True without running a file this
    request already included."""
    return _run("include_once", path, True, False, sys._getframe(1))


def require(path: Any) -> Any:
    """PHP's ``require``: as :func:`include`, but a missing file is PHP's fatal error
    (a warning, then :class:`~phpsess.errors.PHPError` ``Failed opening required ...``)."""
    return _run("require", path, False, True, sys._getframe(1))


def require_once(path: Any) -> Any:
    """PHP's ``require_once``: :func:`require` at most once per request."""
    return _run("require_once", path, True, True, sys._getframe(1))


def get_included_files() -> list[str]:
    """PHP's ``get_included_files()``: the script, then every file included, in order."""
    return list(current_request().included_files)


def exit(status: int | str = 0) -> NoReturn:  # noqa: A001 - PHP's name
    """PHP's ``exit``: a string is printed and the script ends (exit status 0); an int is the
    exit status.  Shutdown functions, output buffers and the session write still run."""
    if isinstance(status, str):
        current_request().write(status.encode("utf-8", "surrogateescape"))
        raise SystemExit(0)
    raise SystemExit(int(status))


def die(status: int | str = 0) -> NoReturn:
    """PHP's ``die``: the same as :func:`exit`."""
    exit(status)
