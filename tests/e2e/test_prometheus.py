"""A real Prometheus scrapes the keeper daemon; the ops files pass promtool and name only
metrics the keeper really exports.

Needs the Debian package ``prometheus`` (``/usr/bin/prometheus`` and ``promtool``); skipped
with a clear reason when it is not installed.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from keeper.devnet.anvil import PROJECT_ROOT, Anvil, free_port
from keeper.devnet.driver import Devnet
from keeper.pipeline.sync import SyncConfig
from tests.e2e.test_daemon import keeper_env, running_keeper, until

pytestmark = pytest.mark.integration

OPS = PROJECT_ROOT / "ops"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="prometheus/promtool not installed (Debian: apt-get install -y prometheus)")

_METRIC = re.compile(r"\bkeeper_[a-z_]+")
_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


async def run(*cmd: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def family(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def names_in(text: str) -> set[str]:
    return {family(n) for n in _METRIC.findall(text)}


def exported(metrics_text: str) -> set[str]:
    """Metric families the keeper declares (labelled ones show # HELP before any sample)."""
    return {family(line.split()[2]) for line in metrics_text.splitlines()
            if line.startswith("# HELP ")}


@needs_prometheus
async def test_promtool_accepts_the_ops_files() -> None:
    assert PROMTOOL is not None
    code, out = await run(PROMTOOL, "check", "config", str(OPS / "prometheus.yml"))
    assert code == 0, out
    code, out = await run(PROMTOOL, "check", "rules", str(OPS / "alerts.yml"))
    assert code == 0, out
    alerts = set(re.findall(r"^\s*- alert: (\w+)$", (OPS / "alerts.yml").read_text(), re.M))
    assert alerts >= {
        "KeeperDown", "KeeperNotSynced", "KeeperHeadStalled", "KeeperCircuitBreakerOpen",
        "KeeperTxsReverting", "KeeperNoBlocksProcessed", "KeeperRpcErrorsRising",
        "KeeperGasSpendHigh", "KeeperOracleGuardHalted"}


@needs_prometheus
async def test_promtool_alert_rule_tests_pass() -> None:
    assert PROMTOOL is not None
    code, out = await run(PROMTOOL, "test", "rules", str(OPS / "alerts_test.yml"))
    assert code == 0, out
    assert "SUCCESS" in out


class PrometheusServer:
    """``prometheus`` on a free port with its own config and storage in ``root``."""

    def __init__(self, root: Path, targets: list[str]) -> None:
        self.root = root
        self.port = free_port()
        shutil.copy(OPS / "alerts.yml", root / "alerts.yml")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [{"job_name": "keeper", "static_configs": [{"targets": targets}]}],
        }
        self.config = root / "prometheus.yml"
        self.config.write_text(json.dumps(config, indent=2))  # JSON is YAML
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> PrometheusServer:
        assert PROMETHEUS is not None
        self.proc = await asyncio.create_subprocess_exec(
            PROMETHEUS, f"--config.file={self.config}",
            f"--storage.tsdb.path={self.root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=(self.root / "prometheus.log").open("wb"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def get(self, path: str, **params: str) -> Any:
        async with aiohttp.ClientSession() as s, s.get(
                self.url + path, params=params, timeout=aiohttp.ClientTimeout(total=3)) as r:
            return json.loads(await r.text()) if r.status == 200 else None

    async def ready(self) -> bool:
        try:
            async with aiohttp.ClientSession() as s, s.get(
                    self.url + "/-/ready", timeout=aiohttp.ClientTimeout(total=2)) as r:
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            if self.proc is not None and self.proc.returncode is not None:
                log = (self.root / "prometheus.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"prometheus exited with {self.proc.returncode}:\n{log}")
            return False

    async def value(self, query: str) -> float | None:
        body = await self.get("/api/v1/query", query=query)
        if not body or body.get("status") != "success" or not body["data"]["result"]:
            return None
        return float(body["data"]["result"][0]["value"][1])


@needs_prometheus
async def test_prometheus_scrapes_the_daemon(
    devnet_node: tuple[Anvil, Devnet], tmp_path: Path
) -> None:
    _, devnet = devnet_node
    await devnet.mine(SyncConfig(start_block=0).follow_depth + 1)  # see test_daemon
    manifest = tmp_path / "manifest.json"
    devnet.m.save(manifest)
    env = keeper_env(manifest, tmp_path / "keeper.sqlite", free_port())
    async with running_keeper(env, tmp_path / "keeper.log") as keeper:
        await until("keeper /readyz", keeper.ready, 20, keeper)
        prom_root = tmp_path / "prometheus"
        prom_root.mkdir()
        async with PrometheusServer(prom_root, [f"127.0.0.1:{keeper.metrics_port}"]) as prom:
            await until("prometheus ready", prom.ready, 20)

            async def scraped() -> bool:
                return (await prom.value('up{job="keeper"}') == 1
                        and (await prom.value('keeper_synced_block{job="keeper"}') or 0) > 0)

            await until('up{job="keeper"} == 1 and keeper_synced_block', scraped, 20, keeper)
            await devnet.mine(2)
            head = int(await devnet.rpc.call("eth_blockNumber"), 16)

            async def followed() -> bool:
                return await prom.value("max(keeper_head_block)") == head

            await until("the head as Prometheus sees it", followed, 15, keeper)
            assert (await prom.value("keeper_blocks_processed_total") or 0) >= 1

            # The rules loaded and evaluate; none of the keeper's alerts fires on a healthy run.
            rules = await prom.get("/api/v1/rules")
            groups = rules["data"]["groups"]
            assert [r["health"] for g in groups for r in g["rules"]] == ["ok"] * sum(
                len(g["rules"]) for g in groups)
            alerts = await prom.get("/api/v1/alerts")
            firing = [a["labels"]["alertname"] for a in alerts["data"]["alerts"]
                      if a["state"] == "firing"]
            assert "KeeperDown" not in firing and "KeeperCircuitBreakerOpen" not in firing

        # Every metric the alerts and the dashboard name is one the keeper exports.
        _, text = await keeper.get("/metrics")
        have = exported(text)
        wanted = names_in((OPS / "alerts.yml").read_text())
        wanted |= names_in((OPS / "grafana" / "keeper-dashboard.json").read_text())
        assert wanted - have == set(), f"not exported by the keeper: {sorted(wanted - have)}"
