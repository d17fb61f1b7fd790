"""A real Redis Cluster for tests and benchmarks: three masters with one replica each on
127.0.0.1, started with ``redis-server --cluster-enabled yes`` and joined with
``redis-cli --cluster create``. Starts and stops processes.

``with RedisCluster() as c: ...`` starts one and always stops it; :func:`redis_cluster`
is a session-scoped pytest fixture wrapping it (started once per test session).  It can
fail a master over to its replica (:meth:`RedisCluster.fail_over`, by killing the master
or with ``CLUSTER FAILOVER``) and move a slot to another master key by key
(:meth:`RedisCluster.migrate_slot`), as an operator does.  A missing ``redis-server`` or
``redis-cli`` fails the test loudly.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

__all__ = ["RedisCluster", "ClusterNodeProcess", "redis_cluster", "cluster_save_path", "age_cluster_session",
           "flush_cluster"]


def _require(binary: str) -> str:
    from tests.phptools import require

    return require(binary)


def _free_ports(n: int) -> list[int]:
    """``n`` ports nothing listens on, with their cluster bus ports (+10000) free too."""
    ports: list[int] = []
    socks = []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port + 10000 > 65535:
                s.close()
                continue
            try:
                b = socket.socket()
                b.bind(("127.0.0.1", port + 10000))
            except OSError:  # the bus port is taken: neither socket is kept
                b.close()
                s.close()
                continue
            socks += [s, b]
            ports.append(port)
        return ports
    finally:
        for s in socks:
            s.close()


class ClusterNodeProcess:
    """One ``redis-server --cluster-enabled yes`` process."""

    def __init__(self, port: int, base: str) -> None:
        self.port = port
        self.dir = os.path.join(base, str(port))
        os.makedirs(self.dir, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart, with its nodes.conf: it rejoins the cluster) and wait for PING."""
        args = [
            _require("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000",
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
            "--logfile", os.path.join(self.dir, "redis.log"), "--cluster-replica-validity-factor", "0",
        ]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server (cluster) exited at start: {self.log()}")
            if self.ping():
                return
            time.sleep(0.01)
        raise RuntimeError(f"redis-server (cluster) did not answer on {self.port}: {self.log()}")

    def ping(self) -> bool:
        """True when the node answers PING."""
        try:
            return self.call("PING") == "PONG"
        except OSError:
            return False

    def call(self, *args: str) -> str:
        """One command through redis-cli; its output without the trailing newline."""
        out = subprocess.run([_require("redis-cli"), "-p", str(self.port), *args], capture_output=True,
                             text=True, timeout=10)
        if out.returncode != 0:
            raise OSError(out.stderr or out.stdout)
        return out.stdout.rstrip("\n")

    @property
    def alive(self) -> bool:
        """The process runs."""
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        """The node's log file so far."""
        try:
            return Path(self.dir, "redis.log").read_text(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL (a crash)."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if self.alive:
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class RedisCluster:
    """Three masters and three replicas (``redis-cli --cluster create ... --cluster-replicas 1``)."""

    def __init__(self, masters: int = 3) -> None:
        self.base = tempfile.mkdtemp(prefix="phpsess-cluster-")
        self.nodes = [ClusterNodeProcess(p, self.base) for p in _free_ports(masters * 2)]

    @property
    def seeds(self) -> list[str]:
        """``127.0.0.1:PORT`` of every node."""
        return [f"127.0.0.1:{n.port}" for n in self.nodes]

    @property
    def save_path(self) -> str:
        """phpredis's rediscluster ``session.save_path``: every node as a seed."""
        return "&".join(f"seed[]={s}" for s in self.seeds)

    def start(self, timeout: float = 60.0) -> "RedisCluster":
        """Start the nodes, join them, wait until every node says ``cluster_state:ok``."""
        for n in self.nodes:
            n.start()
        out = subprocess.run([_require("redis-cli"), "--cluster", "create", *self.seeds, "--cluster-replicas", "1",
                              "--cluster-yes"], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {out.stdout}{out.stderr}")
        self.wait_ok(timeout)
        return self

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node reports ``cluster_state:ok`` and agrees on the slots."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                states = [n.call("CLUSTER", "INFO") for n in self.nodes if n.alive]
                if all("cluster_state:ok" in s for s in states) and len({self._slot_map(n) for n in self.nodes
                                                                          if n.alive}) == 1 and self._synced():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("cluster did not become ok: " + " | ".join(n.log()[-500:] for n in self.nodes))

    def _synced(self) -> bool:
        """Every live replica's link to its master is up and caught up."""
        for n in self.nodes:
            if not n.alive:
                continue
            info = n.call("INFO", "replication")
            if "role:slave" in info and ("master_link_status:up" not in info or "master_sync_in_progress:1" in info):
                return False
        return True

    def _slot_map(self, node: ClusterNodeProcess) -> str:
        lines = sorted(line.split()[1] + " " + " ".join(line.split()[8:]) for line in
                       node.call("CLUSTER", "NODES").splitlines() if "master" in line.split()[2])
        return "\n".join(lines)

    def node_ids(self) -> dict[int, tuple[str, str, str]]:
        """port -> (node id, role, master id or '-'), as a live node sees it."""
        live = next(n for n in self.nodes if n.alive)
        out = {}
        for line in live.call("CLUSTER", "NODES").splitlines():
            parts = line.split()
            port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
            role = "master" if "master" in parts[2] else "replica"
            out[port] = (parts[0], role, parts[3])
        return out

    def node(self, port: int) -> ClusterNodeProcess:
        """The node listening on ``port``."""
        return next(n for n in self.nodes if n.port == port)

    def master_of_slot(self, slot: int) -> ClusterNodeProcess:
        """The master serving ``slot`` now."""
        live = next(n for n in self.nodes if n.alive)
        for entry in self._slots(live):
            lo, hi, port = entry
            if lo <= slot <= hi:
                return self.node(port)
        raise RuntimeError(f"no master for slot {slot}")

    def _slots(self, live: ClusterNodeProcess) -> list[tuple[int, int, int]]:
        ranges = []
        for line in live.call("CLUSTER", "NODES").splitlines():
            parts = line.split()
            if "master" not in parts[2] or "fail" in parts[2]:
                continue
            port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
            for r in parts[8:]:
                if r.startswith("["):
                    continue
                lo, _, hi = r.partition("-")
                ranges.append((int(lo), int(hi or lo), port))
        return ranges

    def replica_of(self, master: ClusterNodeProcess) -> ClusterNodeProcess:
        """A replica of ``master``."""
        ids = self.node_ids()
        master_id = ids[master.port][0]
        port = next(p for p, (_, role, of) in ids.items() if role == "replica" and of == master_id
                    and self.node(p).alive)
        return self.node(port)

    def fail_over(self, slot: int, *, crash: bool = True, timeout: float = 30.0) -> tuple[int, int]:
        """Make the replica of ``slot``'s master the master: by killing the master (a crash:
        the cluster promotes the replica after cluster-node-timeout) or with ``CLUSTER
        FAILOVER`` on the replica.  The old master is started again (it rejoins as a replica).
        :returns: (old master port, new master port).
        """
        master = self.master_of_slot(slot)
        replica = self.replica_of(master)
        if crash:
            master.kill()
        else:
            replica.call("CLUSTER", "FAILOVER")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if "role:master" in replica.call("INFO", "replication"):
                    break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError("the replica was not promoted")
        if crash:
            master.start()
        self.wait_ok(timeout)
        return master.port, replica.port

    def migrate_slot(self, slot: int, *, pause: float = 0.0, timeout: float = 30.0) -> tuple[int, int]:
        """Move ``slot`` to another master the way ``redis-cli --cluster reshard`` does:
        IMPORTING/MIGRATING, then MIGRATE the keys one by one (``pause`` seconds apart),
        then SETSLOT NODE everywhere.  :returns: (source port, target port)."""
        source = self.master_of_slot(slot)
        ids = self.node_ids()
        target = next(self.node(p) for p, (_, role, _) in ids.items() if role == "master" and p != source.port
                      and self.node(p).alive)
        sid, tid = ids[source.port][0], ids[target.port][0]
        target.call("CLUSTER", "SETSLOT", str(slot), "IMPORTING", sid)
        source.call("CLUSTER", "SETSLOT", str(slot), "MIGRATING", tid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            keys = [k for k in source.call("CLUSTER", "GETKEYSINSLOT", str(slot), "1").split("\n") if k]
            if not keys:
                break
            source.call("MIGRATE", "127.0.0.1", str(target.port), "", "0", "5000", "KEYS", *keys)
            if pause:
                time.sleep(pause)
        for n in self.nodes:
            if n.alive and ids.get(n.port, ("", "", ""))[1] == "master":
                n.call("CLUSTER", "SETSLOT", str(slot), "NODE", tid)
        self.wait_ok(timeout)
        return source.port, target.port

    def flush(self) -> None:
        """FLUSHALL on every master."""
        for port, (_, role, _) in self.node_ids().items():
            if role == "master" and self.node(port).alive:
                self.node(port).call("FLUSHALL")

    def stop(self) -> None:
        """Stop every node and remove the directories."""
        for n in self.nodes:
            n.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> "RedisCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A Redis Cluster (3 masters, 3 replicas) shared by the test session."""
    with RedisCluster() as c:
        yield c


# -- the "rediscluster" backend of tests/storage/conftest.py ----------------------------------


def cluster_save_path(request: pytest.FixtureRequest, tmp: Path) -> str:
    """A rediscluster save_path on the session's cluster with a prefix unique to the test."""
    from urllib.parse import quote

    c: RedisCluster = request.getfixturevalue("redis_cluster")
    return c.save_path + "&prefix=" + quote(f"{tmp.name}:", safe="")


def age_cluster_session(handler: object, save_path: str, sid: str, seconds: float) -> None:
    """Make ``sid``'s last write ``seconds`` older: its TTL shrinks by as much (gone at 0)."""
    from redis.cluster import ClusterNode
    from redis.cluster import RedisCluster as Client

    from phpsess.core.rediscluster_url import parse_save_path

    cfg = parse_save_path(save_path)
    client = Client(startup_nodes=[ClusterNode(s.host, s.port) for s in cfg.seeds])
    try:
        key = cfg.session_key(sid)
        left = int(client.pttl(key))
        if left <= 0:
            return
        new = left - int(seconds * 1000)
        if new <= 0:
            client.delete(key)
        else:
            client.pexpire(key, new)
    finally:
        client.close()


def flush_cluster(save_path: str) -> None:
    """Nothing: each test has its own prefix."""
