"""After a rollback (a reorg, or a node restored from an older state): the head follower reports
it, the book says which accounts it restored, the sync tells its consumers, the nonce manager
takes the chain's nonce, and the lane makes the restored accounts due again."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from keeper.app.inflight import Lane
from keeper.app.scan_task import Candidates
from keeper.chain.heads import HeadFollower
from keeper.chain.multicall import MulticallError
from keeper.chain.reorg import block_gone
from keeper.chain.types import Reorg
from keeper.errors import RpcError, RpcResponseError
from keeper.exec.nonce import NonceManager
from keeper.exec.tx import Status, TxOutcome
from keeper.pipeline.sync import BookSync, SyncConfig
from keeper.protocols.aave_v3 import events as ev
from keeper.protocols.aave_v3.book import PositionBook
from keeper.protocols.aave_v3.reader import AaveV3Contracts, ReserveTokens
from tests.unit.test_book_journal import A_TOKEN, ASSET, S_TOKEN, USER, V_TOKEN, _apply
from tests.unit.test_chain_reorg import FakeChain, feed

OTHER = "0x" + "02" * 20

# ---- the head follower ---------------------------------------------------------------------


def restore(chain: FakeChain, to: int) -> None:
    """The node goes back to its state at block ``to`` (evm_revert): later blocks are gone."""
    chain.canonical = chain.canonical[: to + 1]


async def test_a_head_going_back_to_a_known_block_is_a_rollback() -> None:
    chain = FakeChain(10)  # 0..9
    seen = list(chain.canonical[1:10])
    restore(chain, 6)
    events = await feed(chain, [*seen, chain.tip])
    assert events[:9] == seen
    assert events[9:] == [Reorg(common_ancestor=seen[5], depth=3, old_tip=seen[-1])]


async def test_after_a_restore_the_new_blocks_follow_the_rollback() -> None:
    chain = FakeChain(10)
    seen = list(chain.canonical[1:10])
    restore(chain, 6)
    chain.mine(2)  # 7' and 8' on the restored 6
    events = await feed(chain, [*seen, chain.canonical[6], *chain.canonical[7:]])
    assert events[9] == Reorg(common_ancestor=seen[5], depth=3, old_tip=seen[-1])
    assert events[10:] == chain.canonical[7:]


async def test_an_older_head_from_a_lagging_replica_is_not_a_rollback() -> None:
    chain = FakeChain(10)
    seen = list(chain.canonical[1:10])
    # The node still has our tip: an older "latest" is a lagging answer, nothing went back.
    events = await feed(chain, [*seen, chain.canonical[6]])
    assert events == seen


async def test_a_head_the_chain_no_longer_reaches_gives_way_to_the_latest() -> None:
    chain = FakeChain(12)  # 0..11
    seen = list(chain.canonical[1:8])
    stale = chain.canonical[11]
    restore(chain, 5)  # the node went back before we had backfilled up to ``stale``
    follower = HeadFollower(chain, iter_heads([]), known=seen, retry_delay=0.001)
    events = [e async for e in follower._ingest_retrying(stale)]
    assert events == [Reorg(common_ancestor=chain.canonical[5], depth=2, old_tip=seen[-1])]


async def iter_heads(heads: Sequence[Any]) -> Any:
    for h in heads:
        yield h


# ---- the book and the sync ----------------------------------------------------------------


def _book() -> PositionBook:
    book = PositionBook(window=8)
    book.register_reserves([ReserveTokens(ASSET, A_TOKEN, S_TOKEN, V_TOKEN)])
    _apply(book, 1, [ev.ScaledMint(A_TOKEN, 1, 0, USER, USER, 10**18, 0, 10**27)], 100)
    _apply(book, 2, [ev.ScaledMint(A_TOKEN, 2, 0, OTHER, OTHER, 10**18, 0, 10**27)], 100)
    _apply(book, 3, [ev.ScaledMint(A_TOKEN, 3, 0, USER, USER, 10**18, 0, 10**27)], 90)
    return book


def test_rollback_says_which_accounts_it_restored() -> None:
    book = _book()
    update = book.rollback(1)
    assert update is not None and update.rollback
    assert update.block.number == 1 == book.block_number
    assert update.touched_users == {USER, OTHER}
    assert update.market_changed  # the market went back too: re-price everyone
    assert book.rollback(1) is None  # nothing left to undo


def test_the_sync_tells_its_consumers_what_a_rollback_restored() -> None:
    contracts = AaveV3Contracts(pool="0x" + "10" * 20, oracle="0x" + "12" * 20,
                                pool_configurator="0x" + "11" * 20,
                                addresses_provider="0x" + "13" * 20)
    sync = BookSync(FakeChain(1), contracts, SyncConfig(start_block=0), book=_book())
    queue = sync.subscribe()
    called: list[Any] = []
    sync.on_update(called.append)
    update = sync.roll_back(2)
    assert update is not None
    assert queue.get_nowait() == update == called[0]
    assert update.rollback and update.touched_users == {USER}


# ---- the nonce manager --------------------------------------------------------------------


class NonceNode:
    """Answers eth_getTransactionCount like a node: ``latest`` mined, ``pending`` with pool."""

    def __init__(self, latest: int, pending: int | None = None) -> None:
        self.latest = latest
        self.pending = latest if pending is None else pending
        self.reads = 0

    async def call(self, method: str, params: Sequence[Any] = (), *,
                   timeout: float | None = None) -> Any:
        assert method == "eth_getTransactionCount"
        self.reads += 1
        return hex(self.latest if params[1] == "latest" else self.pending)

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], *,
                    timeout: float | None = None, return_exceptions: bool = False) -> list[Any]:
        return [await self.call(m, p) for m, p in calls]


async def test_after_a_rollback_the_next_lease_takes_the_chains_nonce() -> None:
    node = NonceNode(35)
    nonces = NonceManager(node, "0x" + "aa" * 20)
    async with nonces.lease() as lease:
        assert lease.nonce == 35
        lease.mark_sent()
        lease.mark_used()
    node.latest = 36
    async with nonces.lease() as lease:
        assert lease.nonce == 36  # the counter, no read
    reads = node.reads
    # A reorg drops our mined transaction: the chain is back at 35.
    node.latest = node.pending = 35
    nonces.rolled_back()
    async with nonces.lease() as lease:
        assert lease.nonce == 35  # not 36: that would wait behind a gap forever
    assert node.reads > reads


async def test_a_lease_open_across_a_rollback_does_not_move_the_counter_on() -> None:
    node = NonceNode(7)
    nonces = NonceManager(node, "0x" + "aa" * 20)
    async with nonces.lease() as lease:
        lease.mark_sent()
        lease.mark_used()  # mined ... then the node is restored from an older state
        node.latest = node.pending = 4
        nonces.rolled_back()
    async with nonces.lease() as lease:
        assert lease.nonce == 4


async def test_resync_never_goes_below_the_mined_count() -> None:
    # A node whose mempool view lags its chain must not hand out a used nonce.
    nonces = NonceManager(NonceNode(10, pending=9), "0x" + "aa" * 20)
    assert await nonces.resync() == 10


# ---- the lane, the candidates, and reads of a block that is gone ---------------------------


def test_a_rewind_makes_restored_accounts_due_and_clamps_the_others() -> None:
    lane = Lane(backoff_max_blocks=16)
    mined = TxOutcome(Status.MINED, "x", tx_hash="0x1", block_number=120)
    lane.settle(USER, 118, mined)
    for _ in range(5):
        lane.back_off(OTHER, 100)  # waits 16 blocks: due at 116
    lane.rewind(60, {USER})
    assert lane.due(USER, 60)
    assert not lane.due(OTHER, 60) and lane.due(OTHER, 61)


def test_a_request_given_up_after_a_rollback_is_planned_again_at_once() -> None:
    lane = Lane(backoff_max_blocks=16)
    gone = TxOutcome(Status.DROPPED, "x", "rolled back below its nonce", tx_hash="0x1",
                     rolled_back=True)
    assert lane.settle(USER, 50, gone) is None
    assert lane.due(USER, 50)


async def test_a_scan_after_a_rollback_wakes_the_sender_though_its_block_is_lower() -> None:
    candidates = Candidates()
    candidates.put(370, [])
    seen = candidates.scans
    waiter = asyncio.create_task(candidates.wait_newer(seen))
    await asyncio.sleep(0)
    candidates.put(316, [])  # the node went back: a newer scan of an older block
    await asyncio.wait_for(waiter, 1)


def test_reads_of_a_block_that_is_gone_are_recognised() -> None:
    for message in ("BlockOutOfRangeError: block height is 343 but requested was 344",
                    "unknown block", "Resource not found", "header not found"):
        assert block_gone(RpcResponseError("eth_call", -32000, message))
    inner = RpcResponseError("eth_call", -32001, "Resource not found")
    wrapped = MulticallError("aggregate3 of calls 0..53 failed")
    wrapped.__cause__ = inner
    assert block_gone(wrapped)
    assert not block_gone(RpcResponseError("eth_call", 3, "execution reverted"))
    assert not block_gone(RpcError("connection refused"))
