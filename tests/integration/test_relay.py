"""Private submission through a local Flashbots-style relay that forwards bundles to anvil.

Anvil has no ``eth_sendBundle``: the relay here checks the ``X-Flashbots-Signature`` header like
a real relay, records every bundle, and "includes" one by forwarding its raw transactions to
anvil with ``eth_sendRawTransaction``. It can ignore the first bundles, as a builder that did not
pick them, to show the resubmission for the next block.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from eth_account import Account
from eth_account.messages import encode_defunct
from pydantic import SecretStr

from keeper.chain.rpc import HttpRpc
from keeper.devnet.anvil import Anvil
from keeper.domain.fees import GWEI, FeePolicy
from keeper.errors import RpcError, RpcResponseError
from keeper.exec.guards import Guards
from keeper.exec.keys import Signer
from keeper.exec.relay import (
    SIGNATURE_HEADER,
    RelayClient,
    RelaySubmitter,
    flashbots_signature,
    signature_text,
)
from keeper.exec.sender import Sender, SenderSettings
from keeper.exec.tx import Status, TxRequest
from keeper.obs.metrics import Metrics

pytestmark = pytest.mark.integration

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
KEEPER = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
SINK = "0x" + "5a" * 20
POLICY = FeePolicy(priority_fee_share_ppm=10, max_priority_fee=50 * GWEI, max_fee=500 * GWEI)


@dataclass
class LocalRelay:
    """The relay's state, for assertions."""

    node: HttpRpc
    ignore_first: int = 0
    url: str = ""
    bundles: list[tuple[int, list[str], str]] = field(default_factory=list)  # block, txs, signer
    refused: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        header = request.headers.get(SIGNATURE_HEADER, "")
        address, _, signature = header.partition(":")
        try:
            recovered = Account.recover_message(encode_defunct(text=signature_text(body)),
                                                signature=signature)
        except Exception:
            recovered = ""
        if not address or recovered.lower() != address.lower():
            self.refused += 1
            return web.json_response({"error": "invalid flashbots signature"}, status=403)
        req = json.loads(body)
        if req["method"] != "eth_sendBundle":
            return web.json_response({"jsonrpc": "2.0", "id": req["id"],
                                      "error": {"code": -32601, "message": "method not found"}})
        bundle = req["params"][0]
        self.bundles.append((int(bundle["blockNumber"], 16), bundle["txs"], address.lower()))
        if len(self.bundles) > self.ignore_first:
            for raw in bundle["txs"]:
                # a later target block of a tx already included: nothing to do
                with contextlib.suppress(RpcResponseError):
                    await self.node.call("eth_sendRawTransaction", [raw])
        return web.json_response({"jsonrpc": "2.0", "id": req["id"],
                                  "result": {"bundleHash": "0x" + "00" * 32}})


@pytest.fixture
async def node_rpc(anvil: Anvil) -> AsyncIterator[HttpRpc]:
    async with HttpRpc(anvil.url, timeout=10) as rpc:
        yield rpc


@contextlib.asynccontextmanager
async def local_relay(node_rpc: HttpRpc) -> AsyncIterator[LocalRelay]:
    """Serve the relay on a free port (inside the test's own event loop)."""
    state = LocalRelay(node_rpc)
    app = web.Application()
    app.router.add_post("/", state.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)  # a free port
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    try:
        yield state
    finally:
        await runner.cleanup()


def keeper_signer() -> Signer:
    return Signer.from_private_key(SecretStr(KEY), 31337)


def relay_sender(rpc: HttpRpc, client: RelayClient, metrics: Metrics) -> Sender:
    settings = SenderSettings(chain_id=31337, confirmations=1, poll_interval=0.02,
                              receipt_timeout=20, replace_after_blocks=10)
    return Sender(rpc, keeper_signer(), POLICY, Guards.from_config(10**18, 3, False), settings,
                  metrics=metrics, submitter=RelaySubmitter(client, blocks_ahead=1))


def transfer() -> TxRequest:
    return TxRequest(to=SINK, data=b"", value=1, expected_profit_native=10**16, label="relay")


async def test_relay_lands_a_transaction(node_rpc: HttpRpc) -> None:
    metrics = Metrics()
    head = int(await node_rpc.call("eth_blockNumber"), 16)
    async with local_relay(node_rpc) as relay, \
            RelayClient(relay.url, keeper_signer(), timeout=5) as client:
        outcome = await relay_sender(node_rpc, client, metrics).execute(transfer())
    assert outcome.status is Status.MINED, outcome.reason
    assert relay.refused == 0
    assert len(relay.bundles) == 1
    block, txs, signer_address = relay.bundles[0]
    assert block == head + 1 and signer_address == KEEPER and len(txs) == 1
    receipt = await node_rpc.call("eth_getTransactionReceipt", [outcome.tx_hash])
    assert int(receipt["status"], 16) == 1
    assert metrics.value("keeper_txs_sent_total", {"route": "relay"}) == 1


async def test_relay_bundle_resubmitted_for_the_next_block_until_included(
    node_rpc: HttpRpc,
) -> None:
    async with local_relay(node_rpc) as relay, \
            RelayClient(relay.url, keeper_signer(), timeout=5) as client:
        relay.ignore_first = 2  # two blocks pass without our bundle
        task = asyncio.create_task(relay_sender(node_rpc, client, Metrics()).execute(transfer()))
        async with asyncio.timeout(20):
            while not task.done():
                if relay.bundles:
                    await node_rpc.call("evm_mine")  # the chain moves on
                await asyncio.sleep(0.05)
        outcome = await task
    assert outcome.status is Status.MINED, outcome.reason
    assert len(outcome.attempts) == 1 and outcome.replacements == 0
    targets = [b for b, _, _ in relay.bundles]
    assert len(targets) >= 3
    assert targets == sorted(set(targets))  # one bundle per block, each for the next block
    assert all(txs == relay.bundles[0][1] for _, txs, _ in relay.bundles)
    included = int((await node_rpc.call("eth_getTransactionReceipt", [outcome.tx_hash]))
                   ["blockNumber"], 16)
    assert included in targets[2:]


async def test_relay_refuses_a_bad_signature(node_rpc: HttpRpc) -> None:
    async with local_relay(node_rpc) as relay:
        await _refuses_bad_signature(relay)


async def _refuses_bad_signature(relay: LocalRelay) -> None:
    signer = keeper_signer()
    header = flashbots_signature(b'{"other":"body"}', signer)
    assert header.startswith(KEEPER + ":0x") and len(header.split(":")[1]) == 132

    class Tampered(RelayClient):
        async def call(self, method: str, params: Any) -> Any:
            # sign one body, send another
            import aiohttp

            async with aiohttp.ClientSession() as http, http.post(
                self.url, data=b'{"jsonrpc":"2.0","id":1,"method":"eth_sendBundle","params":[]}',
                headers={SIGNATURE_HEADER: header}, timeout=aiohttp.ClientTimeout(total=5),
            ) as resp:
                if resp.status != 200:
                    raise RpcError(f"HTTP {resp.status}")
                return await resp.json()

    with pytest.raises(RpcError, match="403"):
        await Tampered(relay.url, signer).send_bundle([b"\x02"], 1)
    assert relay.refused == 1 and not relay.bundles


async def test_relay_http_error_is_a_transport_error(node_rpc: HttpRpc) -> None:
    async with local_relay(node_rpc) as relay, \
            RelayClient(relay.url + "missing", keeper_signer(), timeout=5) as client:
        with pytest.raises(RpcError, match="HTTP 404"):
            await client.send_bundle([b"\x02"], 1)
