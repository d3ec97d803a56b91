"""A liquidation in flight is asked again only after a block that touched its account or the
price of one of its assets (or that the book has not applied, or a rollback)."""

from __future__ import annotations

from typing import Any, ClassVar

from keeper.app.quiet_blocks import QuietBlocks
from keeper.protocols.aave_v3.book_state import BlockUpdate, BookBlock

USER, OTHER = "0x" + "0a" * 20, "0x" + "0b" * 20
WETH, USDC, WBTC = "0x" + "e1" * 20, "0x" + "05" * 20, "0x" + "b1" * 20


class _Account:
    reserves: ClassVar[dict[str, object]] = {WETH: object(), USDC: object()}


class _Book:
    def account(self, user: str) -> Any:
        assert user == USER
        return _Account()


def update(n: int, *, touched: frozenset[str] = frozenset(), moved: frozenset[str] = frozenset(),
           market: bool = False, rollback: bool = False) -> BlockUpdate:
    return BlockUpdate(BookBlock(n, f"0x{n:064x}", f"0x{n - 1:064x}", 1_000 + n), touched, moved,
                       market, False, rollback)


def test_only_blocks_that_leave_the_account_and_its_prices_alone_are_quiet() -> None:
    q = QuietBlocks(_Book)  # type: ignore[arg-type]
    for n in (11, 12, 13):
        q.record(update(n, touched=frozenset({OTHER}), moved=frozenset({WBTC})))
    assert q.quiet(USER, 10, 13)
    assert q.quiet(USER, 13, 13)  # nothing new
    assert not q.quiet(USER, 10, 14)  # 14 not applied yet: not seen for sure
    q.record(update(14, touched=frozenset({USER})))
    assert not q.quiet(USER, 13, 14)  # a liquidation (anyone's) of this account
    q.record(update(15, moved=frozenset({USDC})))
    assert not q.quiet(USER, 14, 15)  # a price it depends on
    q.record(update(16, market=True))
    assert not q.quiet(USER, 15, 16)  # a reserve's parameters: everyone
    q.record(update(17))
    assert q.quiet(USER, 16, 17)


def test_a_rollback_forgets_what_the_undone_blocks_said() -> None:
    q = QuietBlocks(_Book)  # type: ignore[arg-type]
    q.record(update(11))
    q.record(update(12))
    q.record(update(11, rollback=True))
    assert not q.quiet(USER, 10, 11)
    q.record(update(12))
    assert q.quiet(USER, 11, 12)


async def test_a_kept_liquidation_in_flight_is_asked_again_only_after_a_block_that_matters(
) -> None:
    from keeper.exec.executor import LiquidationExecutor
    from keeper.exec.tx import TxRequest
    from keeper.obs.metrics import Metrics

    calls: list[str] = []

    class Rpc:
        async def call(self, method: str, *_: Any, **__: Any) -> Any:
            calls.append(method)
            return "0x"

    executor = LiquidationExecutor(Rpc(), object(), Metrics(),  # type: ignore[arg-type]
                                   owner=OTHER, native_asset=WETH)
    quiet_blocks = {13}
    executor.quiet = lambda user, after, head: user == USER and head in quiet_blocks
    kept = TxRequest(to=WBTC, data=b"", expected_profit_native=1, label="liquidate",
                     shares=frozenset())
    sold = TxRequest(to=WBTC, data=b"", expected_profit_native=1, label="sell",
                     shares=frozenset({"weth/usdc"}))
    assert await executor.recheck((USER,), kept, 12)  # the first look always asks
    assert await executor.recheck((USER,), kept, 13)  # a quiet block: the answer stands
    assert calls == ["eth_call"]
    assert await executor.recheck((USER,), kept, 14)  # not quiet: asked again
    assert await executor.recheck((USER,), sold, 12) and await executor.recheck((USER,), sold, 13)
    assert calls == ["eth_call"] * 4  # one that trades in a pool is always asked
