"""The health scanner on hand-built books: no misses, incremental == full, ranking, confirmation.

The books here are small dict-backed ``BookView``s over the devnet-like market of
``tests.unit.test_account``, with interest accrued, stable debt, eMode (with and without a live
price source) and dust accounts. The chain is a fake JSON-RPC endpoint that decodes Multicall3
calldata with eth-abi (independently of ``keeper.chain.multicall``) and answers getUserAccountData
with the exact math over its *own* book, so a book that disagrees with it can be staged.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak

from keeper.chain.multicall import (
    AGGREGATE3_SELECTOR,
    MULTICALL3,
    MulticallError,
    aggregate3,
    decode_aggregate3,
    encode_aggregate3,
)
from keeper.domain.account import (
    AccountData,
    EModeCategory,
    Market,
    ReserveState,
    UserAccount,
    UserReserve,
    calculate_user_account_data,
)
from keeper.domain.interest import SECONDS_PER_YEAR
from keeper.domain.reserve_config import UserConfiguration
from keeper.domain.wadray import RAY, WAD
from keeper.errors import RpcResponseError
from keeper.pipeline.scan import BookView, HealthScanner, LiquidatableAccount, rank
from keeper.pipeline.scan import scanner as scanner_module
from keeper.pipeline.scan.rows import RowContext, RowNotes, build_rows, fill_row
from keeper.protocols.aave_v3.account_data import (
    GET_USER_ACCOUNT_DATA_SELECTOR,
    decode_account_data,
    get_user_account_data_calldata,
)
from keeper.protocols.aave_v3.book import BookBlock, MarketState, PositionBook, UserRecord
from keeper.protocols.aave_v3.reader import MarketRead
from tests.unit.test_account import EMODES, ETH_SOURCE, PRICES, RESERVES, T0, usd

POOL = "0x00000000000000000000000000000000000000aa"
YEAR = SECONDS_PER_YEAR


class DictBook:
    """A BookView over plain dicts; ``accounts`` and ``market_`` are edited by the tests."""

    def __init__(self, market: Market, accounts: Mapping[str, UserAccount], block: int = 100):
        self.market_ = market
        self.accounts: dict[str, UserAccount] = dict(accounts)
        self.block_number = block
        self.block_timestamp = market.timestamp

    def market(self) -> Market:
        return self.market_

    def account(self, user: str) -> UserAccount:
        return self.accounts.get(user, UserAccount(UserConfiguration()))

    def users(self) -> Iterable[str]:
        return list(self.accounts)

    def holders(self, asset: str) -> set[str]:
        return {u for u, a in self.accounts.items() if asset in a.reserves}

    def health_factor(self, user: str) -> int:
        return calculate_user_account_data(self.account(user), self.market_).health_factor

    def set_prices(self, prices: Mapping[str, int], *, seconds: int = 0) -> None:
        m = self.market_
        self.market_ = replace(m, prices={**m.prices, **prices}, timestamp=m.timestamp + seconds)
        self.block_timestamp = self.market_.timestamp
        self.block_number += 1


def _as_book(book: DictBook) -> BookView:
    return book  # mypy checks DictBook against the protocol here


def interest_reserves() -> dict[int, ReserveState]:
    """The test market with indexes away from 1 and non-zero rates (interest accrues)."""
    out = {}
    for rid, r in RESERVES.items():
        out[rid] = replace(
            r,
            liquidity_index=RAY + RAY * (rid + 1) // 40,
            current_liquidity_rate=RAY * (rid + 1) // 50,
            variable_borrow_index=RAY + RAY * (rid + 2) // 25,
            current_variable_borrow_rate=RAY * (rid + 2) // 20,
            last_update_timestamp=T0,
        )
    return out


def make_market(*, timestamp: int = T0 + 30 * 86_400, source_price: int = 0) -> Market:
    return Market(
        reserves=interest_reserves(),
        prices={**PRICES, ETH_SOURCE: source_price},
        timestamp=timestamp,
        emode_categories=EMODES,
    )


def user_address(i: int) -> str:
    return "0x" + keccak(text=f"scanner-test:{i}")[12:].hex()


def _account(
    market: Market,
    emode: int,
    collateral: Mapping[int, int],
    variable: Mapping[int, int],
    stable: Mapping[int, tuple[int, int, int]],
) -> UserAccount:
    config = UserConfiguration()
    positions: dict[str, UserReserve] = {}
    for rid in {*collateral, *variable, *stable}:
        principal, rate, ts = stable.get(rid, (0, 0, 0))
        positions[market.reserves[rid].asset] = UserReserve(
            scaled_a_token_balance=collateral.get(rid, 0),
            scaled_variable_debt=variable.get(rid, 0),
            stable_debt_principal=principal,
            stable_borrow_rate=rate,
            stable_last_update_timestamp=ts,
        )
        if rid in collateral:
            config = config.with_collateral(rid, True)
        if rid in variable or rid in stable:
            config = config.with_borrowing(rid, True)
    return UserAccount(configuration=config, emode_category=emode, reserves=positions)


def random_account(rng: random.Random, market: Market) -> UserAccount:
    """Collateral of $0.0001..$10M (dust included), debt set for an HF near 1 (0.9..1.3)."""
    ids = sorted(market.reserves)
    emode = rng.choice((0, 0, 0, 1, 2))
    if emode == 2:
        coll_ids = rng.sample([0, 3], rng.choice((1, 2)))
        debt_ids = [0]
    elif emode == 1:
        coll_ids, debt_ids = [2], [2]
    else:
        coll_ids = rng.sample(ids, rng.choice((1, 1, 2, 3)))
        debt_ids = rng.sample(ids, rng.choice((1, 2)))
    usd_total = 10 ** rng.uniform(-4, 7)
    collateral: dict[int, int] = {}
    for rid in coll_ids:
        r = market.reserves[rid]
        value = usd_total / len(coll_ids)
        tokens = value * 10**8 / market.prices[r.asset]
        collateral[rid] = max(1, int(tokens * 10**r.configuration.decimals))
    probe = calculate_user_account_data(_account(market, emode, collateral, {}, {}), market)
    target = rng.choice((rng.uniform(0.9, 1.3), rng.uniform(0.995, 1.005)))
    debt_base = probe.total_collateral_base * probe.current_liquidation_threshold / 1e4 / target
    variable: dict[int, int] = {}
    stable: dict[int, tuple[int, int, int]] = {}
    for rid in debt_ids:
        r = market.reserves[rid]
        amount = int(debt_base / len(debt_ids) * 10**r.configuration.decimals
                     / market.prices[r.asset])
        if rng.random() < 0.2:
            stable[rid] = (amount, RAY * rng.randint(5, 30) // 100, market.timestamp - 86_400)
        else:
            # Scaled: the balance the token reports is scaled x index.
            index = r.normalized_debt(market.timestamp)
            variable[rid] = amount * RAY // index
    return _account(market, emode, collateral, variable, stable)


def random_book(n: int, seed: int, **market_kw: Any) -> DictBook:
    rng = random.Random(seed)
    market = make_market(**market_kw)
    accounts = {user_address(seed * 1_000_000 + i): random_account(rng, market) for i in range(n)}
    accounts[user_address(-1)] = UserAccount(UserConfiguration())  # an empty account
    return DictBook(market, accounts)


def liquidatable(book: DictBook) -> set[str]:
    m = book.market()
    return {
        u for u, a in book.accounts.items()
        if calculate_user_account_data(a, m).health_factor < WAD
    }


# ---- the prefilter never misses ------------------------------------------------------------
@pytest.mark.parametrize("source_price", [0, usd(2000)])
def test_prefilter_never_misses_an_exactly_liquidatable_account(source_price: int) -> None:
    book = random_book(1_500, seed=3, source_price=source_price)
    scanner = HealthScanner(_as_book(book))
    rng = random.Random(5)
    under = liquidatable(book)
    assert 50 < len(under) < 1_400  # the book really straddles the line
    for step in range(12):
        picked = set(scanner.prefilter_candidates())
        assert under <= picked, f"step {step}: missed {sorted(under - picked)[:3]}"
        # Not a trivial "everyone is a candidate": the band is narrow.
        assert len(picked) < len(book.accounts) * 0.8
        moves = {a: int(p * rng.uniform(0.96, 1.04)) for a, p in book.market().prices.items()
                 if p and rng.random() < 0.5}
        book.set_prices(moves, seconds=rng.randint(1, 3_600))
        scanner.sync()
        under = liquidatable(book)


@pytest.mark.parametrize("source_price", [0, usd(2000)])
def test_what_the_floats_alone_show_under_the_line_the_exact_math_does_too(
        source_price: int) -> None:
    book = random_book(1_500, seed=7, source_price=source_price)
    scanner = HealthScanner(_as_book(book))
    rng = random.Random(9)
    shown = 0
    for step in range(16):
        sure = scanner._index.surely_under(book.market(), scanner.margin)
        m = book.market()
        for f in sure:
            data = calculate_user_account_data(book.account(f.user), m)
            assert data.health_factor < WAD, f"step {step}: {f.user} is at {data.health_factor}"
            # The estimate ranks like the exact figures (the floats' error is ~1e-4 at most).
            assert abs(f.debt_base - data.total_debt_base) <= 1e-3 * data.total_debt_base
        under = liquidatable(book)
        shown += len(sure)
        assert {f.user for f in sure} <= set(scanner.prefilter_candidates()) and len(sure) < \
            max(len(under), 1) + 1
        # Prices move both ways, up to a crash, and time passes (interest, untouched rows).
        moves = {a: int(p * rng.uniform(0.7, 1.1)) for a, p in m.prices.items()
                 if p and rng.random() < 0.5}
        book.set_prices(moves, seconds=rng.choice((1, 3_600, 30 * 86_400)))
        scanner.sync()
    assert shown > 500  # not a vacuous check


def test_float_health_factors_agree_with_exact_math() -> None:
    book = random_book(600, seed=11, source_price=usd(2100))
    scanner = HealthScanner(_as_book(book))
    hf = scanner.prefilter.health_factors
    m = book.market()
    for i, user in enumerate(scanner.users):
        data = calculate_user_account_data(book.account(user), m)
        if data.total_debt_base == 0:
            assert hf[i] == np.inf
        elif data.total_collateral_base > 10**9:  # above $10: per-asset rounding negligible
            assert abs(hf[i] - data.health_factor / WAD) <= 2e-4 * data.health_factor / WAD


def test_interest_over_a_year_is_followed() -> None:
    book = random_book(800, seed=17)
    scanner = HealthScanner(_as_book(book))
    before = liquidatable(book)
    # A year of interest at 10-25% variable rates, without any event: debts grow, HFs fall.
    book.set_prices({}, seconds=YEAR)
    assert scanner.drift() > 0.05
    after = liquidatable(book)
    assert len(after) > len(before)
    # Even before a sync re-sets anything, the widened band keeps every one of them.
    assert after <= set(scanner.prefilter_candidates())
    scanner.sync()
    assert scanner.drift() < scanner.refresh_drift
    assert after <= set(scanner.prefilter_candidates())


def test_dust_accounts_always_go_to_exact_math() -> None:
    market = make_market()
    weth, usdc = 0, 2
    # $0.001 of WETH against $0.0006 of USDC: HF 1.3, but at this size the contract's
    # per-asset rounding (1e-8 USD) is 1e-5 relative, so the float is not trusted.
    dust = _account(market, 0, {weth: 5 * 10**11}, {usdc: 600}, {})
    small = _account(market, 0, {weth: 5 * 10**13}, {usdc: 60_000}, {})  # $0.1, trusted
    book = DictBook(market, {user_address(1): dust, user_address(2): small})
    scanner = HealthScanner(_as_book(book))
    assert scanner.prefilter_candidates() == [user_address(1)]
    # WETH falls 95%: the $0.1 account may now be worth under the trust limit.
    book.set_prices({RESERVES[weth].asset: usd(100)})
    scanner.sync()
    assert liquidatable(book) <= set(scanner.prefilter_candidates()) == {
        user_address(1), user_address(2)}


# ---- the vectorised build == the row-by-row fill -------------------------------------------
def _odd_accounts(market: Market) -> dict[str, UserAccount]:
    """Accounts the random books lack: missing market data, eMode without a reserve, ..."""
    weth, wbtc, usdc, wsteth = 0, 1, 2, 3
    missing_category = _account(market, 7, {usdc: 10**9}, {usdc: 5 * 10**8}, {})
    unknown_reserve = _account(market, 0, {weth: 10**18}, {usdc: 10**9}, {})
    unknown_reserve = replace(unknown_reserve, configuration=unknown_reserve.configuration
                              .with_borrowing(40, True))
    both_stable = _account(market, 2, {weth: 10**18, wsteth: 10**18}, {weth: 10**17},
                           {weth: (10**17, RAY // 10, market.timestamp - 86_400)})
    supplied_not_collateral = _account(market, 0, {wbtc: 10**8}, {usdc: 10**9}, {})
    supplied_not_collateral = replace(
        supplied_not_collateral,
        configuration=supplied_not_collateral.configuration.with_collateral(wbtc, False))
    return {
        user_address(-2): missing_category,
        user_address(-3): unknown_reserve,
        user_address(-4): UserAccount(UserConfiguration(), emode_category=7),  # nothing flagged
        user_address(-5): both_stable,
        user_address(-6): supplied_not_collateral,
        user_address(-7): _account(market, 1, {usdc: 10**6}, {}, {}),  # eMode, no debt
    }


def _context(scanner: HealthScanner) -> RowContext:
    index = scanner.index
    return RowContext.of(scanner.book.market(), index.layout, index.ref_prices)


def _row_by_row(scanner: HealthScanner, users: Sequence[str]) -> tuple[Any, ...]:
    """What ``fill_row`` writes for each user in turn (the path ``touch`` takes)."""
    ctx = _context(scanner)
    width = ctx.layout.width
    c, t, d = (np.zeros((width, len(users))) for _ in range(3))
    ref = np.empty(len(users))
    notes = RowNotes()
    for i, user in enumerate(users):
        ref[i] = fill_row(scanner.book, user, ctx, (c[:, i], t[:, i], d[:, i]), notes)
    return c, c * t, d, ref, notes.always, notes.stable_users, notes.max_stable_rate


def _vectorised(scanner: HealthScanner, users: Sequence[str]) -> tuple[Any, ...]:
    rows = build_rows(scanner.book, users, _context(scanner), len(users))
    return (rows.collateral, rows.collateral * rows.thresholds, rows.debt, rows.collateral_ref,
            rows.notes.always, rows.notes.stable_users, rows.notes.max_stable_rate)


def _position_book(book: DictBook) -> PositionBook:
    """A PositionBook holding the same accounts (its records, not its accounts)."""
    m = book.market()
    read = MarketRead(
        reserves_list=tuple(r.asset for _, r in sorted(m.reserves.items())),
        reserves={r.asset: r for r in m.reserves.values()},
        tokens={}, prices=dict(m.prices), sources={},
        emode_categories=dict(m.emode_categories),
    )
    records = {
        user: UserRecord(
            frozenset(r.asset for rid, r in m.reserves.items()
                      if a.configuration.is_using_as_collateral(rid)),
            a.emode_category,
            {asset: p for asset, p in a.reserves.items()
             if p.scaled_a_token_balance or p.scaled_variable_debt or p.stable_debt_principal},
        )
        for user, a in book.accounts.items()
    }
    out = PositionBook()
    out.load(BookBlock(book.block_number, "0x01", "0x00", m.timestamp), MarketState(read=read),
             records)
    return out


@pytest.mark.parametrize("source_price", [0, usd(2000)])
@pytest.mark.parametrize("zero_threshold", [False, True])
def test_vectorised_build_equals_the_row_by_row_fill(source_price: int,
                                                     zero_threshold: bool) -> None:
    book = random_book(1_500, seed=59, source_price=source_price)
    if zero_threshold:  # WBTC no longer counts as collateral anywhere
        m = book.market()
        wbtc = m.reserves[1]
        book.market_ = replace(m, reserves={**m.reserves, 1: replace(wbtc, configuration=replace(
            wbtc.configuration, ltv=0, liquidation_threshold=0))})
    # Interest since the indexes' update; dust and stable debt come with the random accounts.
    book.set_prices({}, seconds=7 * 86_400)
    book.accounts.update(_odd_accounts(book.market()))
    scanner = HealthScanner(_as_book(book))
    users = list(scanner.users)
    fast = _vectorised(scanner, users)
    slow = _row_by_row(scanner, users)
    for got, want in zip(fast, slow, strict=True):
        if isinstance(got, np.ndarray):
            assert np.array_equal(got, want)  # the same floats, not merely close ones
        else:
            assert got == want
    always, stable = fast[4], fast[5]
    assert always == {user_address(-2), user_address(-3)}
    assert len(stable) > 100 and user_address(-5) in stable
    assert np.isinf(fast[3]).sum() > 0 and np.isfinite(fast[3]).sum() > 1_000
    assert (fast[3] < 10**6).sum() > 10  # dust, by the reference value


@pytest.mark.parametrize("source_price", [0, usd(2000)])
def test_a_position_book_builds_from_its_records_the_same_rows(source_price: int) -> None:
    book = random_book(1_500, seed=61, source_price=source_price)
    book.set_prices({}, seconds=86_400)
    odd = _odd_accounts(book.market())
    del odd[user_address(-3)]  # a PositionBook sets no flag for a reserve it does not know
    book.accounts.update(odd)
    from_accounts = HealthScanner(_as_book(book))
    positions = _position_book(book)
    from_records = HealthScanner(positions)
    # The PositionBook drops the account with nothing in it.
    assert set(from_accounts.users) - set(from_records.users) == {user_address(-1)}
    row = {u: i for i, u in enumerate(from_accounts.users)}
    order = np.array([row[u] for u in from_records.users])
    assert np.array_equal(from_records.prefilter.health_factors[: from_records.size],
                          from_accounts.prefilter.health_factors[order])
    assert np.array_equal(from_records.index.collateral_ref[: from_records.size],
                          from_accounts.index.collateral_ref[order])
    assert from_records.index.notes.always == from_accounts.index.notes.always == {user_address(-2)}
    assert from_records.index.notes.stable_users == from_accounts.index.notes.stable_users
    assert from_records.index.notes.max_stable_rate == from_accounts.index.notes.max_stable_rate
    # And each row the records built is the row _fill_row (on PositionBook.account) writes.
    users = list(from_records.users)
    for got, want in zip(_vectorised(from_records, users), _row_by_row(from_records, users),
                         strict=True):
        assert np.array_equal(got, want) if isinstance(got, np.ndarray) else got == want


# ---- incremental == full ---------------------------------------------------------------------
def test_incremental_updates_equal_a_full_rebuild() -> None:
    book = random_book(2_000, seed=23, source_price=usd(1990))
    scanner = HealthScanner(_as_book(book))
    rng = random.Random(29)
    market = book.market()
    users = list(book.accounts)
    for _ in range(20):
        moves = {a: int(p * rng.uniform(0.97, 1.03)) for a, p in book.market().prices.items()
                 if p and rng.random() < 0.4}
        # Same timestamp: rows set at different times differ by the interest in between (the
        # band covers that, see test_interest_over_a_year_is_followed); here they must agree.
        book.set_prices(moves)
        # Events: some accounts change, some appear.
        touched = rng.sample(users, 10)
        for u in touched:
            book.accounts[u] = random_account(rng, market)
        for k in range(3):
            u = user_address(10**7 + len(users) + k)
            book.accounts[u] = random_account(rng, market)
            touched.append(u)
        users = list(book.accounts)
        scanner.sync(touched)
    fresh = HealthScanner(_as_book(book))
    assert set(scanner.users) == set(fresh.users)
    row = {u: i for i, u in enumerate(fresh.users)}
    order = np.array([row[u] for u in scanner.users])
    got = scanner.prefilter.health_factors[: scanner.size]
    want = fresh.prefilter.health_factors[order]
    finite = np.isfinite(want)
    assert np.array_equal(finite, np.isfinite(got))
    assert np.allclose(got[finite], want[finite], rtol=1e-9)
    def band(s: HealthScanner) -> set[str]:
        return {s.users[i] for i in s.prefilter.candidates(s.margin).tolist()}

    assert band(scanner) == band(fresh)
    # The incremental scanner may also send more possibly-dust accounts to exact math (its
    # reference prices are older); never fewer.
    assert set(scanner.prefilter_candidates()) >= set(fresh.prefilter_candidates())


def test_a_price_move_re_evaluates_only_that_assets_holders() -> None:
    book = random_book(1_000, seed=31)
    scanner = HealthScanner(_as_book(book))
    wbtc = RESERVES[1].asset
    holders = {u for u, a in book.accounts.items() if _holds(a, wbtc)}
    book.set_prices({wbtc: usd(30_000)})
    moved = scanner.update_prices()
    assert 0 < moved == len(holders) < len(book.accounts)


def test_new_users_beyond_capacity_trigger_one_rebuild() -> None:
    book = random_book(10, seed=37)
    scanner = HealthScanner(_as_book(book))
    rng = random.Random(1)
    fresh = {user_address(5_000_000 + i): random_account(rng, book.market()) for i in range(1_100)}
    book.accounts.update(fresh)
    scanner.sync(fresh)
    assert scanner.stats.rebuilds == 2
    assert liquidatable(book) <= set(scanner.prefilter_candidates())


def test_a_threshold_change_re_sets_the_reserves_holders() -> None:
    book = random_book(500, seed=41)
    scanner = HealthScanner(_as_book(book))
    m = book.market()
    weth = m.reserves[0]
    lowered = replace(weth, configuration=replace(weth.configuration, liquidation_threshold=7000))
    book.market_ = replace(m, reserves={**m.reserves, 0: lowered})
    scanner.sync()
    assert liquidatable(book) <= set(scanner.prefilter_candidates())
    # A new eMode category changes the layout: full rebuild.
    book.market_ = replace(book.market_, emode_categories={
        **EMODES, 3: EModeCategory(9000, 9100, 10100, label="new")})
    scanner.sync()
    assert scanner.stats.rebuilds == 2


# ---- ranking -------------------------------------------------------------------------------
def test_rank_by_repayable_debt_then_health_factor() -> None:
    def cand(user: str, hf: float, coll: int, debt: int) -> LiquidatableAccount:
        return LiquidatableAccount(user, int(hf * WAD), coll, debt, True, 1)

    big_healthy = cand("0xa", 0.99, 10**14, 10**14)  # close factor 50%: repays 5e13
    small_deep = cand("0xb", 0.5, 6 * 10**13, 6 * 10**13)  # 100%: 6e13
    capped = cand("0xc", 0.2, 10**12, 10**15)  # 100% of debt, capped by collateral 1e12
    tie = cand("0xd", 0.98, 10**14, 10**14)
    assert small_deep.max_repay_base == 6 * 10**13
    assert big_healthy.max_repay_base == 5 * 10**13
    assert capped.max_repay_base == 10**12
    assert rank([capped, big_healthy, tie, small_deep]) == [small_deep, tie, big_healthy, capped]


# ---- multicall encoding and the confirmation -------------------------------------------------
def test_aggregate3_encoding_matches_eth_abi() -> None:
    calls = [(user_address(i), bytes(range(i % 70))) for i in range(40)]
    for allow in (True, False):
        ours = encode_aggregate3(calls, allow_failure=allow)
        theirs = AGGREGATE3_SELECTOR + abi_encode(
            ["(address,bool,bytes)[]"], [[(t, allow, d) for t, d in calls]])
        assert ours == theirs
    results = [(i % 3 != 0, bytes(range(i % 50))) for i in range(40)]
    assert decode_aggregate3(abi_encode(["(bool,bytes)[]"], [results])) == results
    assert decode_aggregate3(abi_encode(["(bool,bytes)[]"], [[]])) == []
    with pytest.raises(MulticallError):
        decode_aggregate3(abi_encode(["(bool,bytes)[]"], [results])[:-40])


def test_get_user_account_data_encoding() -> None:
    assert keccak(text="getUserAccountData(address)")[:4] == GET_USER_ACCOUNT_DATA_SELECTOR
    user = user_address(7)
    assert get_user_account_data_calldata(user) == (
        GET_USER_ACCOUNT_DATA_SELECTOR + abi_encode(["address"], [user]))
    words = (1, 2, 3, 4, 5, 6)
    data = decode_account_data(abi_encode(["uint256"] * 6, list(words)))
    assert (data.total_collateral_base, data.health_factor) == (1, 6)


class FakeChain:
    """JSON-RPC that runs aggregate3 of getUserAccountData against its own book."""

    def __init__(self, book: DictBook, *, revert_for: frozenset[str] = frozenset(),
                 max_calls: int = 10**9) -> None:
        self.book = book
        self.revert_for = revert_for
        self.max_calls = max_calls  # more calls in one aggregate3 run out of gas
        self.requests: list[int] = []  # eth_calls per JSON-RPC batch
        self.blocks: list[str] = []
        self.asked: list[str] = []  # every account read, in order
        self.head = book.block_number  # eth_blockNumber: a node sealing nothing meanwhile

    async def call(self, method: str, params: Sequence[Any] = (), *,
                   timeout: float | None = None) -> Any:
        if method == "eth_blockNumber":
            return hex(self.head)
        return (await self.batch([(method, params)]))[0]

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], *,
                    timeout: float | None = None, return_exceptions: bool = False) -> list[Any]:
        self.requests.append(len(calls))
        out: list[Any] = []
        for method, params in calls:
            assert method == "eth_call"
            tx, block = params
            self.blocks.append(block)
            assert tx["to"] == MULTICALL3
            raw = bytes.fromhex(tx["data"][2:])
            assert raw[:4] == AGGREGATE3_SELECTOR
            (inner,) = abi_decode(["(address,bool,bytes)[]"], raw[4:])
            if len(inner) > self.max_calls:
                gas = RpcResponseError("eth_call", -32603, "EVM error OutOfGas")
                if not return_exceptions:
                    raise gas
                out.append(gas)
                continue
            results = []
            failed = False
            for target, allow, data in inner:
                assert target.lower() == POOL and data[:4] == GET_USER_ACCOUNT_DATA_SELECTOR
                user = "0x" + data[16:36].hex()
                self.asked.append(user)
                if user in self.revert_for:
                    results.append((False, b"\x08\xc3\x79\xa0"))
                    failed = failed or not allow
                    continue
                d = calculate_user_account_data(self.book.account(user), self.book.market())
                results.append((True, abi_encode(["uint256"] * 6, [
                    d.total_collateral_base, d.total_debt_base, d.available_borrows_base,
                    d.current_liquidation_threshold, d.ltv, d.health_factor])))
            if failed:
                err = RpcResponseError("eth_call", 3, "execution reverted")
                if not return_exceptions:
                    raise err
                out.append(err)
            else:
                out.append("0x" + abi_encode(["(bool,bytes)[]"], [results]).hex())
        return out


async def test_scan_confirms_on_chain_and_counts_mismatches() -> None:
    book = random_book(1_200, seed=43)
    chain_book = DictBook(book.market(), dict(book.accounts))
    under = sorted(liquidatable(book))
    # The chain knows better about two accounts: one is healthy there (repaid), one is not in
    # our book's liquidatable set at all (it borrowed more than we saw).
    repaid, wrong = under[0], next(u for u in book.accounts if u not in under
                                   and book.health_factor(u) < 2 * WAD)
    chain_book.accounts[repaid] = UserAccount(UserConfiguration())
    more_debt = {**book.accounts[wrong].reserves}
    asset, pos = next((a, p) for a, p in more_debt.items() if p.scaled_variable_debt)
    more_debt[asset] = replace(pos, scaled_variable_debt=pos.scaled_variable_debt * 3)
    chain_book.accounts[wrong] = replace(book.accounts[wrong], reserves=more_debt)
    chain = FakeChain(chain_book, revert_for=frozenset({under[1]}))
    scanner = HealthScanner(_as_book(book))
    found = await scanner.scan(chain, POOL, chunk=50)
    confirmed = {c.user for c in found if c.confirmed_on_chain}
    unconfirmed = {c.user for c in found if not c.confirmed_on_chain}
    assert unconfirmed == {under[1]}  # the chain call reverted: kept, flagged
    expected = {u for u in under if u not in (repaid, under[1])}
    if chain_book.health_factor(wrong) < WAD:
        # Only found when it was near the line in our book; then the mismatch is counted too.
        expected |= {wrong} & confirmed
    assert confirmed == expected
    assert scanner.stats.mismatches >= 1
    assert scanner.stats.chain_failures == 1
    assert found == rank(found)
    assert all(c.block == book.block_number for c in found)
    assert set(chain.blocks) == {hex(book.block_number)}
    # One aggregate3 per 50 calls, several of them per JSON-RPC batch.
    assert len(chain.requests) < sum(chain.requests)


async def test_aggregate3_allow_failure_and_strict() -> None:
    book = random_book(30, seed=47)
    users = list(book.accounts)
    chain = FakeChain(book, revert_for=frozenset({users[3]}))
    calls = [(POOL, get_user_account_data_calldata(u)) for u in users]
    results = await aggregate3(chain, calls, chunk=7)
    assert [ok for ok, _ in results] == [u != users[3] for u in users]
    with pytest.raises(MulticallError, match=r"calls 0\.\.6"):
        await aggregate3(chain, calls, chunk=7, allow_failure=False)
    assert await aggregate3(chain, []) == []


async def test_aggregate3_splits_a_chunk_that_runs_out_of_gas() -> None:
    book = random_book(40, seed=53)
    users = list(book.accounts)
    chain = FakeChain(book, max_calls=6)
    calls = [(POOL, get_user_account_data_calldata(u)) for u in users]
    results = await aggregate3(chain, calls, chunk=25)
    assert len(results) == len(users) and all(ok for ok, _ in results)
    expected = [calculate_user_account_data(book.account(u), book.market()).health_factor
                for u in users]
    assert [decode_account_data(d).health_factor for _, d in results] == expected


async def test_the_books_flags_are_heard_before_the_chain_is_asked() -> None:
    book = random_book(1_200, seed=44)
    under = liquidatable(book)
    chain = FakeChain(DictBook(book.market(), dict(book.accounts)))
    heard: list[tuple[set[str], int]] = []

    def on_book(found: list[Any]) -> None:
        assert all(not c.confirmed_on_chain for c in found) and found == rank(found)
        heard.append(({c.user for c in found}, len(chain.requests)))

    scanner = HealthScanner(_as_book(book))
    found = await scanner.scan(chain, POOL, chunk=50, on_book=on_book)
    # Exactly the book's liquidatable accounts, before any request to the chain; then the
    # chain, which agrees, confirms every one of them.
    assert heard == [(set(under), 0)] and under
    assert {c.user for c in found if c.confirmed_on_chain} == set(under)
    assert scanner.stats.last_book_seconds > 0 and scanner.stats.last_chain_seconds > 0


async def test_accounts_far_under_the_line_are_flagged_before_their_exact_math(
        monkeypatch: pytest.MonkeyPatch) -> None:
    book = random_book(1_200, seed=46)
    # A crash: WETH and WBTC lose a third.
    m = book.market()
    book.set_prices({RESERVES[i].asset: m.prices[RESERVES[i].asset] * 2 // 3 for i in (0, 1)})
    under = liquidatable(book)
    chain_book = DictBook(book.market(), dict(book.accounts))
    chain = FakeChain(chain_book)
    scanner = HealthScanner(_as_book(book))
    evaluated: list[str] = []
    who = {id(a): u for u, a in book.accounts.items()}

    def counting(account: UserAccount, market: Market) -> AccountData:
        evaluated.append(who[id(account)])
        return calculate_user_account_data(account, market)

    monkeypatch.setattr(scanner_module, "calculate_user_account_data", counting)
    heard: list[tuple[set[str], set[str], int]] = []

    def on_book(found: list[LiquidatableAccount]) -> None:
        assert found == rank(found)
        heard.append(({c.user for c in found}, set(evaluated), len(chain.requests)))

    # One account the floats show under the line, whose debt the chain knows is repaid.
    sure = {f.user for f in scanner._index.surely_under(book.market(), scanner.margin)}
    repaid = sorted(sure)[0]
    chain_book.accounts[repaid] = UserAccount(UserConfiguration())
    found = await scanner.scan(chain, POOL, chunk=50, on_book=on_book)
    [(flagged, exact_before, asked_before)] = heard
    assert asked_before == 0
    # Every liquidatable account, none more; most of them before their exact math.
    assert flagged == under and len(sure) > len(under) // 2
    assert scanner.stats.last_sure == len(sure) and not sure & exact_before
    # Their exact figures were made once the chain answered, and compared with it: the one
    # the chain disagrees with is counted; the others are vouched for, not read again.
    assert sure <= set(evaluated)
    assert {c.user for c in found if c.confirmed_on_chain} == under - {repaid}
    assert scanner.stats.mismatches == 1
    chain.asked.clear()
    heard.clear()
    again = await scanner.scan(chain, POOL, chunk=50, on_book=on_book)
    assert set(chain.asked) == {repaid} and scanner.stats.last_sure <= 1  # (read twice)
    assert {c.user for c in again} == under - {repaid}


class MovingBookChain(FakeChain):
    """A chain read during which the scanner's own book moves on (the daemon applies the next
    block while the scan awaits the chain)."""

    def __init__(self, chain_book: DictBook, moving: DictBook) -> None:
        super().__init__(chain_book)
        self.moving = moving

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], *,
                    timeout: float | None = None, return_exceptions: bool = False) -> list[Any]:
        self.moving.set_prices({}, seconds=12)  # a block later: a block's interest more
        return await super().batch(calls, timeout=timeout, return_exceptions=return_exceptions)


async def test_the_exact_math_after_the_chain_read_is_the_scans_blocks() -> None:
    book = random_book(1_200, seed=48)
    m = book.market()
    book.set_prices({RESERVES[i].asset: m.prices[RESERVES[i].asset] * 2 // 3 for i in (0, 1)})
    under = liquidatable(book)
    chain = MovingBookChain(DictBook(book.market(), dict(book.accounts)), book)
    scanner = HealthScanner(_as_book(book))
    found = await scanner.scan(chain, POOL, chunk=50, on_book=lambda found: None)
    # The accounts flagged on their floats got their exact math at the block the chain was
    # read at, not at the book's next one: the chain agrees with every one of them.
    assert scanner.stats.last_sure > len(under) // 2
    assert scanner.stats.mismatches == 0
    assert {c.user for c in found if c.confirmed_on_chain} == under


async def test_an_account_the_chain_vouched_for_is_read_again_only_once_it_changes() -> None:
    book = random_book(1_200, seed=45)
    chain_book = DictBook(book.market(), dict(book.accounts))
    chain = FakeChain(chain_book)
    under = sorted(liquidatable(book))
    scanner = HealthScanner(_as_book(book))
    first = await scanner.scan(chain, POOL, chunk=50)
    near = set(chain.asked)
    assert set(under) <= near and scanner.stats.last_vouched == 0
    # Nothing changed: the chain is not asked again, the accounts stay confirmed.
    chain.asked.clear()
    again = await scanner.scan(chain, POOL, chunk=50)
    assert chain.asked == [] and again == first
    assert scanner.stats.last_vouched == len(near)
    # An event touches one account: that one is read again.
    touched = under[0]
    scanner.sync([touched])
    await scanner.scan(chain, POOL, chunk=50)
    assert chain.asked == [touched]
    # The chain disagrees about another (the book missed a repayment): read, and read again
    # every scan until it agrees.
    wrong = under[1]
    chain_book.accounts[wrong] = UserAccount(UserConfiguration())
    scanner.sync([wrong])
    for _ in range(2):
        chain.asked.clear()
        found = await scanner.scan(chain, POOL, chunk=50)
        # (twice a scan: a disagreement is read once more a moment later)
        assert set(chain.asked) == {wrong} and wrong not in {c.user for c in found}
    # A price moves: the accounts near the line that hold it are read again, the others not
    # (their figures moved by interest alone).
    wbtc = RESERVES[1].asset
    for b in (book, chain_book):
        b.set_prices({wbtc: usd(30_000)})
    scanner.sync()
    chain.asked.clear()
    await scanner.scan(chain, POOL, chunk=50)
    holders = {u for u in near if _holds(book.accounts[u], wbtc)}
    kept = near - holders - {wrong}
    assert len(set(chain.asked) & holders) > 1 and not set(chain.asked) & kept
    assert scanner.stats.last_vouched == len(kept) > 0



async def test_a_price_that_creeps_keeps_its_holders_vouches_till_it_has_crept_far() -> None:
    """A rate-based price moves a little every block: its holders stay vouched for (the
    book's exact figures follow it) till it has moved ``VOUCH_PRICE_DRIFT`` since it last
    took their vouches; then they are read again, and the creep counts from there."""
    book = random_book(1_200, seed=45)
    chain_book = DictBook(book.market(), dict(book.accounts))
    chain = FakeChain(chain_book)
    scanner = HealthScanner(_as_book(book))
    await scanner.scan(chain, POOL, chunk=50)
    near = set(chain.asked)
    wbtc = RESERVES[1].asset
    holders = {u for u in near if _holds(book.accounts[u], wbtc)}
    assert len(holders) > 1
    start = book.market().price(wbtc)
    step = start // 10**6  # a millionth a block

    async def creep(blocks: int) -> list[str]:
        price = book.market().price(wbtc)
        for _ in range(blocks):
            price += step
            for b in (book, chain_book):
                b.set_prices({wbtc: price})
            scanner.sync()
            chain.asked.clear()
            await scanner.scan(chain, POOL, chunk=50)
            if chain.asked:
                return list(chain.asked)
        return []

    # 99 millionths: nobody read again, every account near the line vouched for.
    assert await creep(99) == []
    assert scanner.stats.last_vouched == len(near)
    # Past a ten-thousandth: the holders are read again, at once, and only they.
    assert set(await creep(2)) == holders
    # The creep counts again from there.
    assert await creep(99) == []


def _holds(account: UserAccount, asset: str) -> bool:
    r = account.reserves.get(asset)
    return r is not None and bool(r.scaled_a_token_balance or r.scaled_variable_debt
                                  or r.stable_debt_principal)
