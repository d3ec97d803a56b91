"""The executor against a real anvil: never a reverting or blind send, replacement with the same
nonce, consecutive nonces, dry run, reorg re-send, cancel, guards, and no key in any output.

A plain transfer or an ERC20 mint on the devnet stands in for a liquidation.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from pydantic import SecretStr

from keeper.app.config import load_config
from keeper.app.exec_settings import load_signer
from keeper.chain.rpc import HttpRpc
from keeper.devnet.anvil import Anvil
from keeper.devnet.driver import Devnet, function
from keeper.domain.fees import GWEI, FeePolicy, is_valid_replacement
from keeper.errors import ConfigError
from keeper.exec.guards import Guards
from keeper.exec.keys import Signer
from keeper.exec.sender import Sender, SenderSettings
from keeper.exec.tx import Status, TxOutcome, TxRequest
from keeper.obs.logging import configure_logging
from keeper.obs.metrics import Metrics

pytestmark = pytest.mark.integration

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
KEEPER = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
SINK = "0x" + "5a" * 20
ONE_ETH = 10**18
# A small share keeps the tip (≈ 4.8 gwei for 0.01 ETH over 21k gas) below its cap, so that a
# replacement can raise it by 10%: at the cap, geth's rule makes a replacement impossible.
POLICY = FeePolicy(priority_fee_share_ppm=10, max_priority_fee=50 * GWEI, max_fee=500 * GWEI)

_MINT = function("MintableERC20", "mint(uint256)")
_TRANSFER = function("MintableERC20", "transfer")


def signer() -> Signer:
    return Signer.from_private_key(SecretStr(KEY), 31337)


def make_sender(rpc: HttpRpc, *, metrics: Metrics | None = None, guards: Guards | None = None,
                chain_id: int = 31337, **settings: Any) -> Sender:
    opts: dict[str, Any] = {"confirmations": 1, "poll_interval": 0.02, "receipt_timeout": 30.0,
                            "replace_after_blocks": 2} | settings
    dry = bool(opts.get("dry_run"))
    return Sender(rpc, None if dry else signer(), POLICY,
                  guards or Guards.from_config(ONE_ETH, 3, kill_switch=False),
                  SenderSettings(chain_id=chain_id, **opts), metrics=metrics or Metrics(),
                  address=KEEPER)


def transfer(label: str = "transfer") -> TxRequest:
    return TxRequest(to=SINK, data=b"", value=1, expected_profit_native=ONE_ETH // 100,
                     label=label)


async def tx_count(rpc: HttpRpc, block: str = "latest") -> int:
    return int(await rpc.call("eth_getTransactionCount", [KEEPER, block]), 16)


async def drive(task: asyncio.Task[TxOutcome], step: Callable[[int], Awaitable[None]],
                timeout: float = 8.0) -> TxOutcome:
    """Call ``step(i)`` every 50 ms until the sender is done."""
    async with asyncio.timeout(timeout):
        i = 0
        while not task.done():
            await step(i)
            i += 1
            await asyncio.sleep(0.05)
        return await task


@pytest.fixture
async def rpc(anvil: Anvil) -> AsyncIterator[HttpRpc]:
    async with HttpRpc(anvil.url, timeout=10) as client:
        yield client


# ---- never sends a losing or blind transaction -------------------------------------------
async def test_reverting_request_is_never_sent(devnet: Devnet) -> None:
    metrics = Metrics()
    sender = make_sender(devnet.rpc, metrics=metrics)
    usdc = devnet.m.reserve("USDC").address
    before = (await tx_count(devnet.rpc), await tx_count(devnet.rpc, "pending"))
    req = TxRequest(to=usdc, data=_TRANSFER.encode(SINK, 10**30), expected_profit_native=ONE_ETH,
                    label="liq-1")
    outcome = await sender.execute(req)
    assert outcome.status is Status.SKIPPED and not outcome.attempts
    assert "simulation" in outcome.reason and "revert" in outcome.reason.lower()
    assert (await tx_count(devnet.rpc), await tx_count(devnet.rpc, "pending")) == before
    assert metrics.value("keeper_rejections_total", {"reason": "simulation_reverted"}) == 1
    assert metrics.value("keeper_txs_sent_total", {"route": "public"}) is None
    assert not sender.guards.breaker.consecutive  # losing a race is not a failure


async def test_unprofitable_request_is_never_sent(devnet: Devnet) -> None:
    sender = make_sender(devnet.rpc)
    before = await tx_count(devnet.rpc, "pending")
    req = TxRequest(to=devnet.m.reserve("USDC").address, data=_MINT.encode(10**6),
                    expected_profit_native=1000, label="dust")
    outcome = await sender.execute(req)
    assert outcome.status is Status.SKIPPED and outcome.reason.startswith("unprofitable")
    assert await tx_count(devnet.rpc, "pending") == before


async def test_two_requests_in_a_row_each_mined_once_with_consecutive_nonces(
    devnet: Devnet,
) -> None:
    metrics = Metrics()
    sender = make_sender(devnet.rpc, metrics=metrics)
    usdc = devnet.m.reserve("USDC").address
    start = await tx_count(devnet.rpc)
    outcomes = []
    for i in range(2):
        req = TxRequest(to=usdc, data=_MINT.encode(1_000 * 10**6), gas_limit=100_000,
                        expected_profit_native=ONE_ETH // 10, label=f"mint-{i}",
                        detected_at=asyncio.get_running_loop().time())
        outcomes.append(await sender.execute(req))
    assert [o.status for o in outcomes] == [Status.MINED, Status.MINED]
    assert [o.nonce for o in outcomes] == [start, start + 1]
    assert [len(o.attempts) for o in outcomes] == [1, 1]
    assert await tx_count(devnet.rpc) == await tx_count(devnet.rpc, "pending") == start + 2
    assert await devnet.balance_of("USDC", KEEPER) == 2_000 * 10**6
    for o in outcomes:
        tx = await devnet.rpc.call("eth_getTransactionByHash", [o.tx_hash])
        assert int(tx["nonce"], 16) == o.nonce and int(tx["gas"], 16) >= 100_000
        assert o.gas_used is not None and o.effective_gas_price is not None
    assert metrics.value("keeper_txs_mined_total") == 2
    assert metrics.value("keeper_detection_to_send_seconds_count") == 2
    assert (metrics.value("keeper_gas_spent_eth_total") or 0) > 0


async def test_dry_run_simulates_and_sends_nothing(devnet: Devnet) -> None:
    out = io.StringIO()
    handle = configure_logging("INFO", stream=out)
    metrics = Metrics()
    try:
        sender = make_sender(devnet.rpc, metrics=metrics, dry_run=True)
        assert sender.signer is None
        before = (await tx_count(devnet.rpc), await tx_count(devnet.rpc, "pending"))
        req = TxRequest(to=devnet.m.reserve("USDC").address, data=_MINT.encode(10**6),
                        expected_profit_native=ONE_ETH // 10, label="plan-7")
        outcome = await sender.execute(req)
        assert (await tx_count(devnet.rpc), await tx_count(devnet.rpc, "pending")) == before
    finally:
        handle.stop()
    assert outcome.status is Status.SKIPPED and outcome.dry_run and not outcome.attempts
    assert outcome.simulated_gas and outcome.expected_cost
    assert metrics.value("keeper_dry_run_would_send_total") == 1
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    would = [r for r in records if r["event"] == "dry_run_would_send"]
    assert len(would) == 1 and would[0]["label"] == "plan-7"
    assert would[0]["simulated_net_profit_wei"] == ONE_ETH // 10 - outcome.expected_cost


# ---- stuck, replaced, reorged, cancelled ---------------------------------------------------
async def test_stuck_tx_is_replaced_with_the_same_nonce_and_fees_up_10pct(rpc: HttpRpc) -> None:
    metrics = Metrics()
    sender = make_sender(rpc, metrics=metrics, replace_after_blocks=2)
    await rpc.call("anvil_setAutomine", [False])
    start = await tx_count(rpc)
    task = asyncio.create_task(sender.execute(transfer()))
    high_blocks = 0

    async def step(_: int) -> None:
        nonlocal high_blocks
        if high_blocks == 0 and await tx_count(rpc, "pending") == start:
            return  # not sent yet
        if high_blocks < 4:
            # Base fee far above our fee cap: the block leaves our transaction out (anvil even
            # evicts it from its pool; geth would keep it pending).
            await rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(100 * GWEI)])
            high_blocks += 1
        await rpc.call("evm_mine")

    outcome = await drive(task, step)
    assert outcome.status is Status.MINED, outcome.reason
    assert outcome.replacements >= 1
    assert [a.kind for a in outcome.attempts][:2] == ["send", "replace"]
    for old, new in zip(outcome.attempts, outcome.attempts[1:], strict=False):
        assert is_valid_replacement(old.fees, new.fees)
        assert new.fees.max_fee_per_gas * 10 >= old.fees.max_fee_per_gas * 11
        assert new.fees.max_priority_fee_per_gas * 10 >= old.fees.max_priority_fee_per_gas * 11
    mined = await rpc.call("eth_getTransactionByHash", [outcome.tx_hash])
    assert int(mined["nonce"], 16) == outcome.nonce == start
    assert outcome.tx_hash != outcome.attempts[0].tx_hash
    assert await rpc.call("eth_getTransactionReceipt", [outcome.attempts[0].tx_hash]) is None
    # no gap and nothing left behind
    assert await tx_count(rpc) == await tx_count(rpc, "pending") == start + 1
    assert metrics.value("keeper_txs_replaced_total") == outcome.replacements


async def test_reorg_dropping_the_receipt_resimulates_and_resends(rpc: HttpRpc) -> None:
    sender = make_sender(rpc, confirmations=3)
    start = await tx_count(rpc)
    task = asyncio.create_task(sender.execute(transfer("reorged")))
    async with asyncio.timeout(10):
        while True:
            if await tx_count(rpc) > start:  # automine: mined at once
                break
            await asyncio.sleep(0.02)
    first_hash = await _last_tx_hash(rpc)
    await asyncio.sleep(0.3)  # the sender polls every 20 ms: let it see the receipt
    await rpc.call("anvil_reorg", [1, []])
    assert await rpc.call("eth_getTransactionReceipt", [first_hash]) is None
    assert await tx_count(rpc) == start  # anvil does not put it back in the mempool

    async def step(_: int) -> None:
        if await tx_count(rpc) > start:
            await rpc.call("evm_mine")  # bury it under confirmations

    outcome = await drive(task, step)
    assert outcome.status is Status.MINED and outcome.reorgs == 1
    assert [a.kind for a in outcome.attempts] == ["send", "resend"]
    assert outcome.tx_hash == first_hash  # the same signed transaction, same nonce
    assert outcome.nonce == start
    assert await tx_count(rpc) == await tx_count(rpc, "pending") == start + 1


async def _last_tx_hash(rpc: HttpRpc) -> str:
    block = await rpc.call("eth_getBlockByNumber", ["latest", False])
    return str(block["transactions"][-1])


async def test_request_no_longer_wanted_is_cancelled_with_the_same_nonce(rpc: HttpRpc) -> None:
    sender = make_sender(rpc, replace_after_blocks=50)
    await rpc.call("anvil_setAutomine", [False])
    start = await tx_count(rpc)
    calls: list[int] = []
    sent = False

    async def still_wanted(req: TxRequest, block: int) -> bool:
        calls.append(block)
        return len(calls) < 2  # wanted for one block, then the position was liquidated by others

    task = asyncio.create_task(sender.execute(transfer("race-lost"), still_wanted))

    async def step(_: int) -> None:
        nonlocal sent
        sent = sent or await tx_count(rpc, "pending") > start
        if not sent:
            return
        if len(calls) < 2:
            await rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(100 * GWEI)])
        await rpc.call("evm_mine")

    outcome = await drive(task, step)
    assert outcome.status is Status.CANCELLED
    assert [a.kind for a in outcome.attempts] == ["send", "cancel"]
    tx = await rpc.call("eth_getTransactionByHash", [outcome.tx_hash])
    assert tx["to"] == KEEPER and int(tx["value"], 16) == 0 and int(tx["nonce"], 16) == start
    assert is_valid_replacement(outcome.attempts[0].fees, outcome.attempts[1].fees)
    assert await tx_count(rpc) == start + 1


# ---- guards ------------------------------------------------------------------------------
async def test_kill_switch_and_breaker_stop_sending(rpc: HttpRpc) -> None:
    guards = Guards.from_config(ONE_ETH, max_consecutive_failures=1, kill_switch=True)
    metrics = Metrics()
    sender = make_sender(rpc, guards=guards, metrics=metrics)
    outcome = await sender.execute(transfer())
    assert outcome.status is Status.SKIPPED and "kill switch" in outcome.reason
    guards.kill.release()
    # A send the node refuses (wrong chain id in the signature) is a failure: breaker opens.
    wrong_chain = make_sender(rpc, guards=guards, metrics=metrics, chain_id=1)
    refused = await wrong_chain.execute(transfer())
    assert refused.status is Status.DROPPED and "rejected by node" in refused.reason
    assert guards.breaker.is_open
    assert metrics.value("keeper_circuit_breaker_open") == 1
    blocked = await sender.execute(transfer())
    assert blocked.status is Status.SKIPPED and blocked.reason.startswith("circuit breaker open")
    assert await tx_count(rpc, "pending") == 0


async def test_spend_budget_refuses_over_budget(rpc: HttpRpc) -> None:
    guards = Guards.from_config(gas_budget_per_hour_wei=1000, max_consecutive_failures=3,
                                kill_switch=False)
    outcome = await make_sender(rpc, guards=guards).execute(transfer())
    assert outcome.status is Status.SKIPPED and "gas budget" in outcome.reason
    assert await tx_count(rpc, "pending") == 0


# ---- the key never shows ---------------------------------------------------------------
async def test_private_key_never_appears_in_logs_metrics_or_errors(
    rpc: HttpRpc, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = io.StringIO()
    handle = configure_logging("DEBUG", stream=out)
    metrics = Metrics()
    texts: list[str] = []
    try:
        ok = await make_sender(rpc, metrics=metrics).execute(transfer("good"))
        assert ok.status is Status.MINED
        bad = await make_sender(rpc, metrics=metrics, chain_id=1).execute(transfer("bad"))
        assert bad.status is Status.DROPPED
        texts += [repr(ok), repr(bad), bad.reason]
        keystore = tmp_path / "ks.json"
        keystore.write_text(json.dumps(Account.encrypt(bytes.fromhex(KEY[2:]), "pw",
                                                       kdf="scrypt", iterations=2**10)))
        env = {"KEEPER_ACCOUNT__KEYSTORE": str(keystore), "KEEPER_KEYSTORE_PASSWORD": "nope"}
        with pytest.raises(ConfigError) as err:
            await load_signer(load_config(None, env))
        texts.append(str(err.value))
        raw_env = {"KEEPER_PRIVATE_KEY": KEY, "KEEPER_NETWORK__CHAIN_ID": "10"}
        with pytest.raises(ConfigError) as err2:
            await load_signer(load_config(None, raw_env))
        texts.append(str(err2.value))
        import logging
        logging.getLogger("keeper.test").error("config error: %s", err.value)
    finally:
        handle.stop()
    captured = capsys.readouterr()
    texts += [out.getvalue(), captured.out, captured.err, metrics.render().decode(),
              repr(signer()), caplog.text]
    assert "tx_handed_out" in out.getvalue()  # the logs did capture the sends
    blob = "\n".join(texts).lower()
    bare = KEY[2:]
    for form in (bare, "0x" + bare, bare.upper(), bare[:40], bare[-40:]):
        assert form.lower() not in blob
