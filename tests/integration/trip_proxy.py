"""A TCP proxy that counts round trips: how the store tests and benches check that a
session cycle costs as many trips to Redis or memcached as PHP's extension spends.

    with RoundTripProxy(server_port) as proxy:
        handler.open(f"tcp://127.0.0.1:{proxy.port}", ...)
        ...
        assert proxy.trips == 2

A round trip is a client send that follows a reply from the server, or the first send
of a connection: commands pipelined before the reply count once.  Listens on 127.0.0.1
only; a thread per connection; :meth:`close` stops it and closes what is still open.
"""

from __future__ import annotations

import select
import socket
import threading
from types import TracebackType

__all__ = ["RoundTripProxy"]


class RoundTripProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``upstream_port``, counting round trips
    (:attr:`trips`) and connections (:attr:`connections`)."""

    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.upstream = (host, upstream_port)
        self.trips = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="trip-proxy", daemon=True).start()

    def reset(self) -> None:
        """Zero the counters."""
        with self._lock:
            self.trips = self.connections = 0

    def close(self) -> None:
        """Stop accepting, and close the connections still open."""
        with self._lock:
            self._closed = True
            sockets = list(self._open)
        self._listener.close()
        for s in sockets:
            _shut(s)

    def __enter__(self) -> RoundTripProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self.connections += 1
                self._open.update((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        replied = True  # a connection's first send is a trip
        try:
            while True:
                ready, _, _ = select.select([client, server], [], [])
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is client:
                        if replied:
                            with self._lock:
                                self.trips += 1
                            replied = False
                        server.sendall(data)
                    else:
                        replied = True
                        client.sendall(data)
        except (OSError, ValueError):  # ValueError: select on a socket close() shut
            return
        finally:
            with self._lock:
                self._open.discard(client)
                self._open.discard(server)
            for s in (client, server):
                _shut(s)
                s.close()


def _shut(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
