"""``print()`` into the current request: a ``sys.stdout`` replacement. Writes to the
process's original stdout outside any request.
"""

from __future__ import annotations

import io
import sys
from typing import IO, Any, Callable

from ..session.context import active_request
from ..session.request import Request

__all__ = ["OutputProxy", "install_output_proxy"]


class OutputProxy(io.TextIOBase):
    """A ``sys.stdout`` replacement that sends ``print()`` output to the current request.

    Outside a request context it writes to the original stream, unless
    :attr:`activate` is set: then the first write calls it to make the request the
    output belongs to (a CGI script's, :mod:`phpsess.runtime.cgi`).  Text is
    encoded as UTF-8; ``.buffer`` accepts bytes.
    """

    def __init__(self, fallback: IO[str]) -> None:
        super().__init__()
        self._fallback = fallback
        self.buffer = _BinaryOutput(self)
        #: makes the request of output written outside any request (None: none)
        self.activate: Callable[[], Request | None] | None = None

    @property
    def original(self) -> IO[str]:
        """The stream this proxy replaced."""
        return self._fallback

    def _target(self) -> Request | None:
        req = active_request()
        if req is None and self.activate is not None:
            return self.activate()
        return req

    def write(self, s: str) -> int:
        req = active_request()  # (_target() inlined: print() calls this twice a line)
        if req is None and self.activate is not None:
            req = self.activate()
        if req is None:
            return self._fallback.write(s)
        req.write(s.encode("utf-8", "surrogateescape"))
        return len(s)

    def write_bytes(self, b: bytes) -> int:
        req = self._target()
        if req is None:
            self._fallback.flush()
            fb = getattr(self._fallback, "buffer", None)
            if fb is not None:
                return int(fb.write(b))
            return self._fallback.write(b.decode("utf-8", "replace"))
        req.write(bytes(b))
        return len(b)

    def flush(self) -> None:
        if self._target() is None:
            self._fallback.flush()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fallback.fileno()


class _BinaryOutput(io.RawIOBase):
    def __init__(self, proxy: OutputProxy) -> None:
        super().__init__()
        self._proxy = proxy

    def write(self, b: Any) -> int:
        return self._proxy.write_bytes(bytes(b))

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self._proxy.flush()


def install_output_proxy() -> OutputProxy:
    """Replace ``sys.stdout`` with an :class:`OutputProxy` (idempotent); return it."""
    if type(sys.stdout) is OutputProxy:  # (exactly: io's ABCs register other streams)
        return sys.stdout
    proxy = OutputProxy(sys.stdout)
    sys.stdout = proxy
    return proxy
