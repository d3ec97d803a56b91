"""The two racers as processes: ``keeper run`` (our daemon, as an operator starts it) and the
naive keeper; their CPU time and peak memory from /proc, their JSON-line logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
DAEMON_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil account 1
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """The process's high-water resident set size (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Racer:
    """A subprocess whose stderr (JSON log lines) goes to a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Racer:
        with self.log_path.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=err)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def events(self, path: Path | None = None) -> list[dict[str, Any]]:
        text = (path or self.log_path).read_text(errors="replace") if (path or self.log_path).exists() else ""
        out = []
        for line in text.splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    async def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``: only this process."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode


def daemon(manifest: Path, work: Path, metrics_port: int, *extra: str) -> Racer:
    """``python -m keeper run -c config/devnet.toml`` against ``manifest``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
    env.update({
        "KEEPER_NETWORK__DEVNET_MANIFEST": str(manifest),
        "KEEPER_STATE__SQLITE": str(work / "keeper.sqlite"),
        "KEEPER_PRIVATE_KEY": DAEMON_KEY,
        "KEEPER_METRICS__PORT": str(metrics_port),
        # Funded like the naive keeper, it may keep the collateral as the naive keeper does.
        "KEEPER_EXECUTOR__KEEP_COLLATERAL": "true",
        "PYTHONUNBUFFERED": "1",
    })
    argv = [sys.executable, "-m", "keeper", "run", "-c", str(ROOT / "config" / "devnet.toml"), *extra]
    return Racer(argv, env, work / ("keeper-once.log" if "--once" in extra else "keeper.log"))


async def forensics(manifest: Path, work: Path, from_block: int, to_block: int) -> dict[str, Any]:
    """``keeper forensics --json`` over the daemon's decision record (``work/keeper.sqlite``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
    env.update({"KEEPER_NETWORK__DEVNET_MANIFEST": str(manifest),
                "KEEPER_STATE__SQLITE": str(work / "keeper.sqlite")})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "keeper", "forensics", "-c", str(ROOT / "config" / "devnet.toml"),
        "--from", str(from_block), "--to", str(to_block), "--json", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    if proc.returncode != 0:
        raise RuntimeError(f"keeper forensics exited {proc.returncode}: {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out)
    return result


def busy_core(work: Path) -> Racer:
    """Another process that keeps one core busy while it runs: the race on a noisy machine
    (a neighbour's job, a second node, a backup), where our daemon, the naive keeper and the
    node share what is left."""
    return Racer([sys.executable, "-c", "while True: pass"], dict(os.environ),
                 work / "busy.stderr")


def naive(config: Path, work: Path) -> Racer:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return Racer([sys.executable, "-m", "bench.naive_keeper", str(config)], env, work / "naive.stderr")


async def http_get(port: int, path: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{port}{path}"
    async with aiohttp.ClientSession() as s, s.get(url, timeout=aiohttp.ClientTimeout(2)) as r:
        return r.status, await r.text()


async def ready(port: int) -> bool:
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        return (await http_get(port, "/readyz"))[0] == 200
    return False


def _samples(body: str, name: str) -> list[float]:
    """Every sample of ``name`` (with or without labels) in a Prometheus text exposition."""
    return [float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
            if line.startswith(name + " ") or line.startswith(name + "{")]


async def metric(port: int, name: str) -> float | None:
    """The first sample of ``name``, or None when absent or the metrics do not answer."""
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        found = _samples((await http_get(port, "/metrics"))[1], name)
        return found[0] if found else None
    return None


async def metric_sum(port: int, name: str) -> float | None:
    """The sum of every labelled sample of ``name``, or None when the metrics do not answer."""
    try:
        _, body = await http_get(port, "/metrics")
    except (aiohttp.ClientError, TimeoutError):
        return None
    return sum(_samples(body, name))
