"""Whether a reverted keeper transaction lost a race it could not see coming.

The daemon simulates every liquidation on the state after its head and sends a few ms later; a
test's crash driver (price updates, then arbitrage swaps) can land in between and make the
contract's profit floor revert ours, as designed. Tests excuse exactly that, with evidence
replayed block by block; any other revert is the keeper's fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from keeper.devnet.driver import Devnet

if TYPE_CHECKING:
    from tests.e2e.test_daemon import KeeperProcess


def handed_out_heads(keepers: Sequence[KeeperProcess]) -> dict[str, int]:
    """tx hash -> the head the daemon had simulated on when it handed that transaction out."""
    return {str(e["tx_hash"]).lower(): int(e["head"]) for k in keepers
            for e in k.named("tx_handed_out") if e.get("tx_hash") and e.get("head") is not None}



async def explain_revert(devnet: Devnet, keepers: Sequence[KeeperProcess],
                         tx_hash: str) -> tuple[bool, str]:
    """Whether a reverted keeper transaction lost a race to the crash driver, and the evidence.

    The daemon simulates at "pending" (on anvil: the state after ``head``, logged with the
    hand-out) and sends a few ms later; anvil mines each transaction at once, in arrival order.
    The call is replayed on the state after each block from ``head`` up to ours. It lost a race
    (True) only when it passes on ``head`` (the keeper's simulation was right) and the first
    block after which it reverts holds transactions of the crash driver and none of the
    keeper's. Anything else is the keeper's doing: sent without a fresh simulation, on a
    stale state, or undone by its own transactions (e.g. a user liquidated twice)."""
    rpc = devnet.rpc
    keeper = devnet.m.keeper.lower()
    tx = await rpc.call("eth_getTransactionByHash", [tx_hash])
    mined = int(tx["blockNumber"], 16)
    head = handed_out_heads(keepers).get(tx_hash.lower())
    lines = [f"{tx_hash}: simulated after block {head}, mined in block {mined}"]
    if head is None or head >= mined:
        return False, "\n".join([*lines, "  no hand-out before it was mined in the logs"])
    call = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "gas": tx["gas"]}
    raced: bool | None = None  # decided at the first block after which the call reverts
    for b in range(head, mined + 1):
        blk = await rpc.call("eth_getBlockByNumber", [hex(b), True])
        txs = blk["transactions"]
        if b == mined:
            txs = txs[:int(tx["transactionIndex"], 16)]
        senders = {str(t["from"]).lower() for t in txs}
        moved = [f"{t['from'][:8]}->{(t.get('to') or '')[:8]} {t['input'][:10]}" for t in txs]
        if b == mined:
            if raced is None:  # passes after every earlier block: undone inside ours
                raced = bool(senders) and keeper not in senders
                if not txs:  # nothing before it: only the block itself differs
                    lines.append(await _in_its_block(rpc, call, blk, tx_hash))
            lines.append(f"  before ours in block {b}: {moved}")
            break
        try:
            await rpc.call("eth_call", [call, hex(b)])
            replay = "passes"
        except Exception as exc:  # a revert: its data names the error
            replay = f"reverts {getattr(exc, 'data', None) or exc}"[:110]
            if raced is None:
                raced = b > head and bool(senders) and keeper not in senders
                if b > head and keeper in senders and senders != {keeper}:
                    raced, split = await _split_block(rpc, b, txs, keeper, call)
                    replay += f"; {split}"
        lines.append(f"  block {b} {moved}: replayed after it {replay}")
    return bool(raced), "\n".join(lines)


async def _in_its_block(rpc: Any, call: dict[str, Any], block: dict[str, Any],
                        tx_hash: str) -> str:
    """For a CI log, when ours reverted first in its block though it passes on the state
    before it: the call on that state with the block's own number and time
    (``eth_simulateV1``), and the mined transaction's own revert and gas (its trace)."""
    number = int(block["number"], 16)
    ours = {"from": call["from"], "to": call["to"], "input": call["data"], "gas": call["gas"]}
    try:
        answer = await rpc.call("eth_simulateV1", [{"blockStateCalls": [{
            "blockOverrides": {"number": block["number"], "time": block["timestamp"]},
            "calls": [ours]}]}, hex(number - 1)])
        result = answer[0]["calls"][0]
        env = "passes" if int(result["status"], 16) == 1 \
            else f"reverts {result.get('returnData') or result.get('error')}"
    except Exception as exc:  # a diagnosis only: say why there is none
        env = f"could not be simulated ({exc})"
    try:
        trace = await rpc.call("debug_traceTransaction", [tx_hash, {"tracer": "callTracer"}])
        mined = (f"{trace.get('error')} {trace.get('output') or ''}, gas used "
                 f"{int(trace.get('gasUsed', '0x0'), 16)} of {int(call['gas'], 16)}")
    except Exception as exc:
        mined = f"no trace ({exc})"
    return (f"  on block {number - 1}'s state with block {number}'s number and time it "
            f"{env[:200]}; mined: {mined[:300]}")


async def _split_block(rpc: Any, block: int, txs: list[dict[str, Any]], keeper: str,
                       call: dict[str, Any]) -> tuple[bool, str]:
    """A block that reverts ours holds the driver's transactions and the keeper's: which did
    it? Ours is simulated on the block before, after the driver's alone and after the keeper's
    alone (``eth_simulateV1``, in their order). A lost race only when the driver's revert it
    and the keeper's do not."""
    ours = {"from": call["from"], "to": call["to"], "input": call["data"], "gas": call["gas"]}
    passes: dict[bool, bool] = {}
    for keepers in (False, True):
        calls = [{"from": t["from"], "to": t["to"], "input": t["input"], "value": t["value"],
                  "gas": t["gas"]} for t in txs if (str(t["from"]).lower() == keeper) == keepers]
        answer = await rpc.call("eth_simulateV1", [
            {"blockStateCalls": [{"calls": [*calls, ours]}]}, hex(block - 1)])
        passes[keepers] = int(answer[0]["calls"][-1]["status"], 16) == 1
    said = {True: "passes", False: "reverts"}
    return (not passes[False] and passes[True],
            f"after the driver's alone it {said[passes[False]]}, "
            f"after the keeper's alone it {said[passes[True]]}")
