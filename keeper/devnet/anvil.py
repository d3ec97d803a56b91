"""Start and stop an Anvil node from node_modules on a free port, and prove it is ours.

Other processes may hold 8545 (or any port), so we pick a free one, start anvil without
``--silent`` (it would hide "Address already in use"), and check that the process answering on
the port is the one we started before anything talks to it.

Past a few hundred blocks anvil moves old states to disk, by default under
``~/.foundry/anvil/tmp``, and leaves them there when it is stopped by a signal (anvil 1.7: a
SIGTERM'd node that had mined ~1,100 blocks left ~1,000 files; a day of tests and races left
66 GB). Every node we start therefore gets its own cache directory, removed when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from keeper.chain.rpc import HttpRpc
from keeper.errors import DevnetError, RpcError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = PROJECT_ROOT / "node_modules"

_PLATFORM = {("Linux", "x86_64"): "linux-amd64", ("Linux", "aarch64"): "linux-arm64",
             ("Darwin", "arm64"): "darwin-arm64", ("Darwin", "x86_64"): "darwin-amd64"}


def anvil_binary(node_modules: Path = NODE_MODULES) -> Path:
    """The native anvil binary shipped by npm ``@foundry-rs/anvil`` for this platform.

    We run the binary itself rather than the node wrapper so that the pid we hold is anvil's
    and a signal stops the node, not just its parent.
    """
    env = os.environ.get("KEEPER_ANVIL_BIN")
    if env:
        return Path(env)
    key = (platform.system(), platform.machine())
    suffix = _PLATFORM.get(key)
    if suffix is None:
        raise DevnetError(f"no anvil build for {key[0]}/{key[1]}")
    path = node_modules / "@foundry-rs" / f"anvil-{suffix}" / "bin" / "anvil"
    if not path.exists():
        raise DevnetError(f"anvil not found at {path}: run `npm ci` (or `make setup`)")
    return path


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listener_pids(port: int) -> set[int]:
    """Pids of processes listening on 127.0.0.1:port (Linux /proc; empty elsewhere)."""
    inodes: set[str] = set()
    hexport = f"{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[1].endswith(":" + hexport) and parts[3] == "0A":
                inodes.add(parts[9])
    pids: set[int] = set()
    if not inodes:
        return pids
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        pids.add(int(proc.name))
                        break
    return pids


def is_anvil_pid(pid: int) -> bool:
    """True when ``pid`` is alive and is an anvil process."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmd) and cmd[0].endswith(b"anvil")


@dataclass(frozen=True, slots=True)
class AnvilOptions:
    port: int | None = None
    chain_id: int = 31337
    block_time: float | None = None
    load_state: Path | None = None
    fork_url: str | None = None
    fork_block: int | None = None
    gas_limit: int | None = None
    code_size_limit: int | None = None
    order: str | None = None  # "fees" to order the mempool by fee, as real builders do
    # Where the node persists old states; removed (with its contents) when the node stops.
    # None: a fresh temporary directory.
    cache_path: Path | None = None
    extra_args: tuple[str, ...] = ()


class Anvil:
    """A running anvil process that we started. ``await Anvil.start(opts)``; ``await a.stop()``."""

    def __init__(
        self, proc: subprocess.Popen[bytes], port: int, log_path: Path | None, cache_path: Path,
    ) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.cache_path = cache_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @staticmethod
    def command(opts: AnvilOptions, port: int, cache_path: Path) -> list[str]:
        cmd = [str(anvil_binary()), "--host", "127.0.0.1", "--port", str(port),
               "--chain-id", str(opts.chain_id), "--cache-path", str(cache_path)]
        if opts.block_time is not None:
            cmd += ["--block-time", f"{opts.block_time:g}"]
        if opts.load_state is not None:
            cmd += ["--load-state", str(opts.load_state)]
        if opts.fork_url is not None:
            cmd += ["--fork-url", opts.fork_url]
            if opts.fork_block is not None:
                cmd += ["--fork-block-number", str(opts.fork_block)]
        if opts.gas_limit is not None:
            cmd += ["--gas-limit", str(opts.gas_limit)]
        if opts.code_size_limit is not None:
            cmd += ["--code-size-limit", str(opts.code_size_limit)]
        if opts.order is not None:
            cmd += ["--order", opts.order]
        cmd += list(opts.extra_args)
        return cmd

    @classmethod
    async def start(
        cls,
        opts: AnvilOptions = AnvilOptions(),
        *,
        log_path: Path | None = None,
        detach: bool = False,
        ready_timeout: float = 15.0,
    ) -> Anvil:
        """Start anvil and wait until it answers on its port and the listener is our process.

        ``detach`` puts it in its own session so it outlives this process (``keeper devnet up``).
        """
        attempts = 1 if opts.port is not None else 3
        last: Exception | None = None
        for _ in range(attempts):
            port = opts.port if opts.port is not None else free_port()
            if listener_pids(port):
                last = DevnetError(f"port {port} is already in use by another process")
                if opts.port is not None:
                    raise last
                continue
            cache = _fresh_cache(opts.cache_path)
            # Popen (fork/exec, no waiting) rather than asyncio's subprocess: a detached devnet
            # node must outlive this event loop, which asyncio's child transports do not allow.
            out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115, ASYNC230
            try:
                proc = subprocess.Popen(  # noqa: ASYNC220
                    cls.command(opts, port, cache), stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=detach,
                )
            except BaseException:
                shutil.rmtree(cache, ignore_errors=True)
                raise
            finally:
                if log_path:
                    out.close()  # type: ignore[union-attr]
            anvil = cls(proc, port, log_path, cache)
            try:
                await anvil._wait_ready(ready_timeout)
                return anvil
            except DevnetError as exc:
                last = exc
                await anvil.stop()
        assert last is not None
        raise last

    async def _wait_ready(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with HttpRpc(self.url, timeout=1.0) as rpc:
            while True:
                if self.proc.poll() is not None:
                    tail = self._log_tail()
                    raise DevnetError(f"anvil exited with code {self.proc.returncode}{tail}")
                try:
                    await rpc.call("eth_chainId")
                except RpcError:
                    if loop.time() > deadline:
                        raise DevnetError(f"anvil did not answer on port {self.port} within {timeout:g}s") from None
                    await asyncio.sleep(0.02)
                    continue
                break
        pids = listener_pids(self.port)
        if pids and self.pid not in pids:
            raise DevnetError(f"port {self.port} is answered by pid {sorted(pids)}, not our anvil {self.pid}")

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
        return (": " + " | ".join(lines)) if lines else ""

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the node (SIGTERM, then SIGKILL), reap it and remove its state cache."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while self.proc.poll() is None and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            if self.proc.poll() is None:
                self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=1)
        if self.proc.poll() is not None:
            shutil.rmtree(self.cache_path, ignore_errors=True)

    async def __aenter__(self) -> Anvil:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _fresh_cache(path: Path | None) -> Path:
    """An empty directory for a node's persisted states: ``path`` emptied of a previous node's
    leftovers, or a new temporary directory."""
    if path is None:
        return Path(tempfile.mkdtemp(prefix="keeper-anvil-"))
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


async def stop_pid(pid: int, timeout: float = 5.0) -> bool:
    """Stop a detached anvil by pid, only if that pid is still an anvil. Returns True if stopped."""
    if not is_anvil_pid(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    # The node is not our child (``up`` ran in another process): poll until it is gone
    # (an exited node's empty cmdline no longer reads as anvil).
    while is_anvil_pid(pid) and loop.time() < deadline:  # noqa: ASYNC110 - no event to wait on
        await asyncio.sleep(0.02)
    if is_anvil_pid(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True
