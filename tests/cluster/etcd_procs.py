"""Real etcd members for the tests: free ports, temp data dirs, stopped on exit.

``EtcdCluster.start(n)`` starts ``n`` members (``/usr/bin/etcd``, Debian ``etcd-server``) on
127.0.0.1 and checks that the listener on each port is ours (the member list it serves names
our members) before a test uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import signal
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ETCD = shutil.which("etcd")


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free a moment ago: every socket is held till all are picked, so
    the kernel cannot hand one out twice (one at a time, a CI run got two members the same
    client port, and the second exited)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"


@dataclass
class EtcdCluster:
    members: list[Member]
    token: str
    tmp: Path
    logs: list[Path] = field(default_factory=list)

    @property
    def endpoints(self) -> list[str]:
        return [m.url for m in self.members]

    @classmethod
    async def start(cls, n: int) -> EtcdCluster:
        assert ETCD is not None, "etcd is not installed (apt-get install etcd-server)"
        tmp = Path(tempfile.mkdtemp(prefix="keeper-etcd-"))
        token = "keeper-test-" + secrets.token_hex(4)
        ports = free_ports(2 * n)
        members = [Member(f"{token}-m{i}", ports[2 * i], ports[2 * i + 1], tmp / f"m{i}")
                   for i in range(n)]
        cluster = cls(members, token, tmp)
        for m in members:
            await cluster.start_member(m)
        try:
            for m in members:
                await cluster.wait_ready(m)
        except BaseException:
            await cluster.stop()
            raise
        return cluster

    async def start_member(self, m: Member) -> None:
        assert ETCD is not None
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        log = (self.tmp / f"{m.name}.log").open("ab")
        m.proc = await asyncio.create_subprocess_exec(
            ETCD, "--name", m.name, "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.url, "--advertise-client-urls", m.url,
            "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", initial, "--initial-cluster-state", "new",
            "--initial-cluster-token", self.token,
            # Fast elections: a test's failover should take well under a second.
            "--heartbeat-interval", "50", "--election-timeout", "500",
            stdout=log, stderr=log)
        log.close()

    async def wait_ready(self, m: Member, timeout: float = 20.0) -> None:
        """Until ``m`` serves, and serves *our* cluster (not another process on its port)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                assert m.proc is not None and m.proc.returncode is None, f"{m.name} exited"
                try:
                    async with http.post(m.url + "/v3/cluster/member/list", json={},
                                         timeout=aiohttp.ClientTimeout(total=1)) as resp:
                        body = await resp.json(content_type=None)
                    names = {x.get("name") for x in body.get("members", [])}
                    assert m.name in names, f"port {m.client_port} is not {m.name}'s: {names}"
                    async with http.post(m.url + "/v3/kv/range", json={"key": "eA=="},
                                         timeout=aiohttp.ClientTimeout(total=1)) as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if loop.time() > deadline:
                    raise TimeoutError(f"etcd member {m.name} not ready")
                await asyncio.sleep(0.1)

    async def kill(self, m: Member) -> None:
        if m.proc is not None and m.proc.returncode is None:
            m.proc.send_signal(signal.SIGKILL)
            await m.proc.wait()

    async def restart(self, m: Member) -> None:
        await self.kill(m)
        await self.start_member(m)

    async def stop(self) -> None:
        for m in self.members:
            with contextlib.suppress(ProcessLookupError):
                await self.kill(m)
        shutil.rmtree(self.tmp, ignore_errors=True)
