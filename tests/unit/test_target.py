"""One target resolver for every command; the daemon's readiness from heads and scans."""

from __future__ import annotations

import asyncio

import pytest

from keeper.app.config import load_config
from keeper.app.head import DaemonReadiness
from keeper.commands.target import resolve_target
from keeper.errors import ConfigError

PROVIDER = "0x2f39d218133afab8f2b819b1066c7e434ad94e9e"
FACTORY = "0x5c69bee701ef814a2b6a3edd4b1652cb9cc5aa6f"


def test_without_a_manifest_the_config_is_the_target() -> None:
    cfg = load_config(None, {"KEEPER_NETWORK__CHAIN_ID": "1",
                             "KEEPER_NETWORK__RPC_URLS": "http://a:1, http://b:2",
                             "KEEPER_NETWORK__WS_URL": "ws://a:1",
                             "KEEPER_AAVE__POOL_ADDRESSES_PROVIDER": PROVIDER,
                             "KEEPER_AAVE__START_BLOCK": "16291127",
                             "KEEPER_DEX__UNISWAP_V2_FACTORY": FACTORY})
    target = resolve_target(cfg)
    assert target.rpc_urls == ("http://a:1", "http://b:2") and target.ws_url == "ws://a:1"
    assert target.contracts is None  # resolved from the provider at start-up
    assert target.addresses_provider.lower() == PROVIDER and target.start_block == 16291127
    assert target.uniswap_v2_factory is not None and target.uniswap_v2_factory.lower() == FACTORY
    assert len(target.pair_init_code_hash) == 32
    assert target.symbol("0x" + "ab" * 20) == "0xabababab"  # unknown: the start of the address


@pytest.mark.parametrize(("env", "field"), [
    ({"KEEPER_AAVE__POOL_ADDRESSES_PROVIDER": PROVIDER}, "network.rpc_urls"),
    ({"KEEPER_NETWORK__RPC_URLS": "http://a:1"}, "aave.pool_addresses_provider"),
])
def test_a_missing_endpoint_or_market_is_a_config_error(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}: "):
        resolve_target(load_config(None, {"KEEPER_NETWORK__CHAIN_ID": "1", **env}))


async def test_ready_when_the_scan_is_near_a_recent_head_and_the_node_answers() -> None:
    readiness = DaemonReadiness(max_lag_blocks=2, max_head_age=30)
    readiness.saw_head(100)
    assert not readiness.check()[0]  # nothing scanned yet
    readiness.scanned(97)
    assert readiness.check() == (False, "3 blocks behind head 100")
    readiness.scanned(99)
    assert readiness.check()[0]
    readiness.node_error = "connection refused"
    assert readiness.check() == (False, "node unreachable: connection refused")
    readiness.saw_head(101)
    assert readiness.check()[0] and readiness.head == 101 and readiness.processed == 99
    now = asyncio.get_running_loop().time()
    assert not readiness.check(now + 31)[0]
