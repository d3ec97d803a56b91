"""A batch priced by the gas an order of the batches traced before took: given only when every
order's gross profit pays twice its share, by liquidator contract; a batch refused on such a
figure is traced, and sent again behind the sends planned since only when the call needs more
gas than the figure."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from keeper.domain.plan import Plan
from keeper.exec.batch import Batches
from keeper.exec.gas_memo import BatchGasMemo
from keeper.exec.order import SendOrder
from keeper.exec.tx import Status
from tests.unit.test_gas_memo import _Sender, executor, plan, priced, with_params


class _BatchSender(_Sender):
    """Refuses every batch in its simulation; not a dry run."""

    settings = SimpleNamespace(dry_run=False)


def kept(gross: int = 10**30, user: str = "0x" + "12" * 20) -> Plan:
    """An order that keeps its collateral (what a batch carries), worth ``gross``."""
    return with_params(priced(plan(), gross), user=user, swap_path=(), keep_collateral=True,
                       flash_loan=False)


def test_a_batch_is_priced_at_its_size_times_the_most_an_order_took() -> None:
    memo, p = BatchGasMemo(), kept()
    assert memo.usable([p, p]) is None  # nothing traced yet: trace it
    memo.learn([p, p, p, p], 900_001)  # 225,000.25 an order: rounded up
    assert memo.usable([p] * 10) == 2_250_010
    memo.learn([p, p], 400_000)  # a lower figure after a higher one keeps the higher
    assert memo.usable([p] * 4) == 4 * 225_001
    for _ in range(8):  # eight figures back, the higher one goes
        memo.learn([p], 200_000)
    assert memo.usable([p] * 5) == 5 * 200_000
    # Another contract has figures of its own.
    assert memo.usable([replace(p, liquidator="0x" + "99" * 20)] * 4) is None


def test_a_batch_of_fewer_than_four_orders_is_traced() -> None:
    """Its 30% margin is under one order's gas: an order of an account holding many
    reserves (~1.7 times the usual) ran a batch of two out of gas on chain."""
    memo, p = BatchGasMemo(), kept()
    memo.learn([p] * 10, 2_250_000)
    assert [memo.usable([p] * n) for n in (1, 2, 3)] == [None, None, None]
    assert memo.usable([p] * 4) == 4 * 225_000


def test_every_order_must_pay_twice_its_share() -> None:
    memo, p = BatchGasMemo(), kept()
    memo.learn([p], p.gas_estimate)  # an order took its modelled gas
    rich, poor = kept(2 * p.gas_cost), kept(2 * p.gas_cost - 1)
    assert memo.usable([rich] * 4) == 4 * p.gas_estimate
    assert memo.usable([rich] * 3 + [poor]) is None  # one order short: the batch is traced


def _market() -> Any:
    return SimpleNamespace(prices={})


async def test_a_batch_goes_on_the_figure_once_one_was_traced() -> None:
    sender = _BatchSender("unused")
    ex = executor(sender, traced=2_000_000)
    traces: list[str] = []
    traced = ex.predict_gas

    async def predict_gas(*args: Any, **kw: Any) -> tuple[int, bool]:
        traces.append(kw.get("block", "latest"))
        return await traced(*args, **kw)

    ex.predict_gas = predict_gas  # type: ignore[method-assign]
    batches = Batches(ex)
    first = await batches.prepare([kept()] * 8, _market())
    assert traces == ["latest"] and not first.remembered_gas
    assert first.request.known_gas == 2_000_000
    second = await batches.prepare([kept()] * 10, _market())
    assert traces == ["latest"] and second.remembered_gas  # no trace
    assert second.request.known_gas == 2_500_000
    assert second.request.gas_limit == 2_500_000 * 130 // 100


async def _refused_on_the_figure(traced: int) -> tuple[_BatchSender, Any, list[Any]]:
    sender = _BatchSender("execution reverted")
    ex = executor(sender, traced=2_000_000)
    batches = Batches(ex)
    await batches.prepare([kept()] * 10, _market())  # traced: 200,000 an order
    order = SendOrder()
    turn = order.turn()
    later = [order.turn() for _ in range(3)]
    prepared = await batches.prepare([kept()] * 10, _market(), turn=turn)
    assert prepared.remembered_gas and prepared.request.known_gas == 2_000_000

    async def predict_gas(*_: Any, **__: Any) -> tuple[int, bool]:
        return traced, True

    ex.predict_gas = predict_gas  # type: ignore[method-assign]
    out = await batches.send(prepared)
    return sender, later, out


async def test_a_batch_refused_on_a_short_figure_goes_again_at_the_traced_one() -> None:
    sender, later, out = await _refused_on_the_figure(traced=2_900_000)
    assert [r.known_gas for r in sender.requests] == [2_000_000, 2_900_000]
    assert sender.requests[1].gas_limit == 2_900_000 * 130 // 100
    retry = sender.requests[1].turn
    assert retry is not None and retry.ticket > max(t.ticket for t in later)
    assert len(out) == 10 and all(e.outcome is not None and e.outcome.status is Status.SKIPPED
                                  for e in out)


async def test_a_batch_refused_on_a_figure_that_covers_the_call_is_not_sent_again() -> None:
    sender, _, out = await _refused_on_the_figure(traced=1_900_000)
    assert [r.known_gas for r in sender.requests] == [2_000_000]
    assert len(out) == 10
