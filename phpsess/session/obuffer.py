"""PHP's output control layer (main/output.c): a stack of output buffers between the script's
output and the response body. No I/O: what leaves the bottom of the stack goes to the
callable it is given (the request's body writer, which sends the headers first).

``output_buffering = 4096`` in php.ini puts one buffer (the "default output handler")
on the stack before the script runs: output collects there and reaches the client only
when 4096 bytes are waiting or the request ends, so ``header()`` still works after some
``echo``.  ``ob_start()`` pushes more.
"""

from __future__ import annotations

from typing import Any, Callable, Final

__all__ = [
    "OutputBuffers",
    "Buffer",
    "PHP_OUTPUT_HANDLER_START",
    "PHP_OUTPUT_HANDLER_WRITE",
    "PHP_OUTPUT_HANDLER_FLUSH",
    "PHP_OUTPUT_HANDLER_CLEAN",
    "PHP_OUTPUT_HANDLER_FINAL",
    "PHP_OUTPUT_HANDLER_CONT",
    "PHP_OUTPUT_HANDLER_END",
    "PHP_OUTPUT_HANDLER_CLEANABLE",
    "PHP_OUTPUT_HANDLER_FLUSHABLE",
    "PHP_OUTPUT_HANDLER_REMOVABLE",
    "PHP_OUTPUT_HANDLER_STDFLAGS",
    "DEFAULT_HANDLER_NAME",
]

# the phase flags a handler receives (main/php_output.h)
PHP_OUTPUT_HANDLER_START: Final = 1
PHP_OUTPUT_HANDLER_WRITE: Final = 0
PHP_OUTPUT_HANDLER_CONT: Final = 0
PHP_OUTPUT_HANDLER_CLEAN: Final = 2
PHP_OUTPUT_HANDLER_FLUSH: Final = 4
PHP_OUTPUT_HANDLER_FINAL: Final = 8
PHP_OUTPUT_HANDLER_END: Final = 8
# what ob_start()'s $flags allow
PHP_OUTPUT_HANDLER_CLEANABLE: Final = 16
PHP_OUTPUT_HANDLER_FLUSHABLE: Final = 32
PHP_OUTPUT_HANDLER_REMOVABLE: Final = 64
PHP_OUTPUT_HANDLER_STDFLAGS: Final = 112

#: ob_list_handlers()' name of the buffer ``output_buffering`` (or an ob_start() without callback) makes
DEFAULT_HANDLER_NAME: Final = "default output handler"

Handler = Callable[..., Any]


class Buffer:
    """One level of the stack: the bytes collected, the handler, the chunk size."""

    __slots__ = ("data", "handler", "chunk_size", "flags", "started", "name", "disabled")

    def __init__(self, handler: Handler | None, chunk_size: int, flags: int) -> None:
        self.data = bytearray()
        self.handler = handler
        self.chunk_size = max(chunk_size, 0)
        self.flags = flags
        self.started = False
        self.disabled = False  # the handler failed (returned nothing usable): pass through
        self.name = DEFAULT_HANDLER_NAME if handler is None else _handler_name(handler)


def _handler_name(handler: Handler) -> str:
    name = getattr(handler, "__qualname__", None) or getattr(handler, "__name__", None)
    if not name or "<lambda>" in name:
        return "Closure::__invoke"
    return str(name)


def _drop(data: bytes) -> None:
    """The sink of a finished request's buffers: output after the end is dropped."""


class OutputBuffers:
    """The output buffer stack of one request.

    :param sink: receives what leaves the bottom of the stack.
    """

    __slots__ = ("stack", "_sink", "_in_handler")

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self.stack: list[Buffer] = []
        self._sink = sink
        self._in_handler = False

    def detach(self) -> None:
        """The request is over: drop the buffers and the sink (no reference back to it)."""
        self.stack = []
        self._sink = _drop

    @property
    def level(self) -> int:
        """``ob_get_level()``."""
        return len(self.stack)

    @property
    def in_handler(self) -> bool:
        """True while an output handler runs (PHP refuses ob_start() there)."""
        return self._in_handler

    def start(self, handler: Handler | None = None, chunk_size: int = 0,
              flags: int = PHP_OUTPUT_HANDLER_STDFLAGS) -> None:
        """``ob_start()``: push a buffer."""
        self.stack.append(Buffer(handler, chunk_size, flags))

    def write(self, data: bytes) -> None:
        """Output: into the top buffer (flushed down once it holds ``chunk_size`` bytes), or
        to the sink when no buffer is active."""
        if self._in_handler:
            return  # PHP drops output made by an output handler
        self._write_at(len(self.stack) - 1, data)

    def _write_at(self, index: int, data: bytes) -> None:
        if index < 0:
            self._sink(data)
            return
        buf = self.stack[index]
        buf.data += data
        if buf.chunk_size and len(buf.data) >= buf.chunk_size:
            # main/output.c php_output_handler_append: a full chunk goes through the handler
            out = self._run(buf, PHP_OUTPUT_HANDLER_WRITE)
            if out:
                self._write_at(index - 1, out)

    def _run(self, buf: Buffer, phase: int) -> bytes:
        """Pass the buffer's bytes through its handler with ``phase``; empty the buffer."""
        data = bytes(buf.data)
        buf.data = bytearray()
        if not buf.started:
            phase |= PHP_OUTPUT_HANDLER_START
            buf.started = True
        if buf.handler is None or buf.disabled:
            return data
        self._in_handler = True
        try:
            result = buf.handler(data.decode("utf-8", "surrogateescape"), phase)
        finally:
            self._in_handler = False
        if result is False:
            return data  # PHP: a handler returning false passes the buffer on unchanged
        if result is None or result is True:
            return b""
        if isinstance(result, (bytes, bytearray)):
            return bytes(result)
        return str(result).encode("utf-8", "surrogateescape")

    def contents(self) -> bytes | None:
        """``ob_get_contents()``: the top buffer's bytes, or None without a buffer."""
        return bytes(self.stack[-1].data) if self.stack else None

    def flush(self) -> bool:
        """``ob_flush()``: the top buffer through its handler, down one level; False without one."""
        if not self.stack:
            return False
        out = self._run(self.stack[-1], PHP_OUTPUT_HANDLER_FLUSH)
        if out:
            self._write_at(len(self.stack) - 2, out)
        return True

    def clean(self) -> bool:
        """``ob_clean()``: discard the top buffer's bytes (its handler still sees them)."""
        if not self.stack:
            return False
        self._run(self.stack[-1], PHP_OUTPUT_HANDLER_CLEAN)
        return True

    def end(self, *, discard: bool) -> bool:
        """``ob_end_flush()`` / ``ob_end_clean()``: final handler call, pop; False without a buffer."""
        if not self.stack:
            return False
        buf = self.stack[-1]
        out = self._run(buf, PHP_OUTPUT_HANDLER_FINAL | (PHP_OUTPUT_HANDLER_CLEAN if discard else 0))
        self.stack.pop()
        if out and not discard:
            self._write_at(len(self.stack) - 1, out)
        return True

    def end_all(self) -> None:
        """Request end (main/output.c php_output_end_all): every buffer flushed down, top first."""
        while self.stack:
            self.end(discard=False)

    def discard_all(self) -> None:
        """Drop every buffer without output (php_output_discard_all)."""
        while self.stack:
            self.end(discard=True)

    def handlers(self) -> list[str]:
        """``ob_list_handlers()``: the handler names, bottom first."""
        return [b.name for b in self.stack]

    def status(self) -> dict[str, Any]:
        """``ob_get_status()`` of the top buffer (PHP's keys), or ``{}``."""
        if not self.stack:
            return {}
        b = self.stack[-1]
        return {
            "name": b.name,
            "type": 0 if b.handler is None else 1,
            "flags": b.flags | (0x1000 if b.started else 0),  # PHP_OUTPUT_HANDLER_STARTED
            "level": len(self.stack) - 1,
            "chunk_size": b.chunk_size,
            "buffer_size": max(16384, b.chunk_size),
            "buffer_used": len(b.data),
        }
