"""Logging redaction, metrics on their own registry, and the /metrics /healthz /readyz server."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import aiohttp
import pytest

from keeper.obs.logging import REDACTED, LogHandle, configure_logging, get_logger, scrub_text
from keeper.obs.metrics import Metrics
from keeper.obs.server import ObsServer, Readiness

KEY = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
TX_HASH = "0x" + "ab" * 32


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, LogHandle]]:
    out = io.StringIO()
    handle = configure_logging("DEBUG", stream=out)
    try:
        yield out, handle
    finally:
        handle.stop()


def lines(out: io.StringIO, handle: LogHandle) -> list[dict[str, object]]:
    handle.stop()  # flush the background writer
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_scrub_text_redacts_key_shaped_hex_only() -> None:
    assert scrub_text(f"key 0x{KEY} end") == f"key {REDACTED} end"
    assert scrub_text(KEY.upper()) == REDACTED
    assert scrub_text("0x" + "ab" * 20) == "0x" + "ab" * 20  # an address stays
    long_data = "0x" + "cd" * 100  # calldata is not a key
    assert scrub_text(long_data) == long_data


def test_structlog_and_stdlib_lines_are_json_and_redacted(
    captured: tuple[io.StringIO, LogHandle],
) -> None:
    out, handle = captured
    log = get_logger("keeper.test")
    log.info("signed", private_key="0x" + KEY, password="hunter2", tx_hash=TX_HASH,
             nested={"secret": "s3", "note": f"k={KEY}"}, items=[KEY])
    logging.getLogger("keeper.chain.test").warning("stdlib says %s", KEY)
    try:
        raise ValueError(f"boom with {KEY}")
    except ValueError:
        log.exception("failed")
    records = lines(out, handle)
    assert [r["event"] for r in records] == ["signed", f"stdlib says {REDACTED}", "failed"]
    first = records[0]
    assert first["private_key"] == REDACTED and first["password"] == REDACTED
    assert first["tx_hash"] == TX_HASH  # hashes are what operators need
    assert first["nested"] == {"secret": REDACTED, "note": f"k={REDACTED}"}
    assert first["items"] == [REDACTED]
    assert first["level"] == "info" and "ts" in first
    assert records[1]["level"] == "warning" and records[1]["logger"] == "keeper.chain.test"
    assert "ValueError" in str(records[2]["exception"])
    text = out.getvalue()
    assert KEY not in text.lower() and "hunter2" not in text


def test_metrics_have_their_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.txs_sent.labels("public").inc()
    a.rejections.labels("unprofitable").inc(2)
    a.detection_to_send_seconds.observe(0.003)
    assert a.value("keeper_txs_sent_total", {"route": "public"}) == 1
    assert b.value("keeper_txs_sent_total", {"route": "public"}) is None
    assert a.value("keeper_rejections_total", {"reason": "unprofitable"}) == 2
    text = a.render().decode()
    for name in ("keeper_blocks_processed_total", "keeper_positions_tracked",
                 "keeper_liquidatable", "keeper_plans_total", "keeper_txs_mined_total",
                 "keeper_txs_reverted_total", "keeper_txs_replaced_total",
                 "keeper_profit_realised_eth_total", "keeper_gas_spent_eth_total",
                 "keeper_circuit_breaker_open", "keeper_detection_to_send_seconds_bucket"):
        assert name in text


def test_readiness_rules() -> None:
    r = Readiness(max_lag_blocks=2, max_head_age=30)
    assert r.check(now=0) == (False, "no block processed yet")
    r.update(processed=10, head=12, now=0)
    assert r.check(now=1)[0]
    r.update(processed=10, head=13, now=2)
    assert r.check(now=3) == (False, "3 blocks behind head 13")
    r.update(processed=13, head=13, now=4)
    assert not r.check(now=40)[0]


async def test_server_endpoints() -> None:
    metrics = Metrics()
    metrics.blocks_processed.inc(7)
    readiness = Readiness(max_lag_blocks=1)
    async with ObsServer(metrics, readiness, "127.0.0.1", 0) as server, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{server.port}"
        timeout = aiohttp.ClientTimeout(total=5)
        async with http.get(base + "/healthz", timeout=timeout) as resp:
            assert resp.status == 200
        async with http.get(base + "/metrics", timeout=timeout) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            assert "keeper_blocks_processed_total 7.0" in await resp.text()
        async with http.get(base + "/readyz", timeout=timeout) as resp:
            assert resp.status == 503
            assert (await resp.json())["ready"] is False
        readiness.update(processed=5, head=6)
        async with http.get(base + "/readyz", timeout=timeout) as resp:
            assert resp.status == 200
            assert (await resp.json())["processed"] == 5
