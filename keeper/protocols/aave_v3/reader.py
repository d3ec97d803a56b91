"""Read an Aave V3 market (any Pool revision, 3.0 to 3.6) at one block in one Multicall3
``aggregate3``.

One ``eth_call`` carries, for every listed reserve, ``Pool.getReserveData`` (configuration word,
indexes, rates, last update, id, token addresses) and ``AaveOracle.getSourceOfAsset``, plus
``Pool.getReservesList``, ``AaveOracle.getAssetsPrices`` of every reserve, the eMode categories
and the prices of their price sources. The oracle read every block is the truth for prices:
many feeds move without an event.

A request is built from *hints* (the reserves, eMode ids and sources known before); when the
answer shows more (a new reserve, a category first used), the read is repeated with the
larger hints, which happens only when the market changed shape. ``MarketReader.request`` and
``MarketReader.decode`` are separate so that the caller can put the read in the same JSON-RPC
batch as that block's ``eth_getLogs``. What differs by revision (liquid eMode, virtual balances,
grace periods, deficits) is in ``market_calls``; the reader is built for one revision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi.exceptions import DecodingError

from keeper.chain.abi import Function, hexstr_to_bytes
from keeper.chain.multicall import MULTICALL3, MulticallError, aggregate3_call
from keeper.chain.multicall import decode_aggregate3 as decode_aggregate3_results
from keeper.chain.rpc import JsonParams, JsonRpc
from keeper.chain.types import BlockId
from keeper.domain.account import ZERO_ADDRESS, EModeCategory, ReserveState, UserReserve
from keeper.domain.reserve_config import UserConfiguration, decode_reserve_configuration
from keeper.domain.revision import AaveRevision
from keeper.errors import KeeperError
from keeper.protocols.aave_v3 import abis
from keeper.protocols.aave_v3.market_calls import parts_for


class ReadError(KeeperError, RuntimeError):
    """A market read failed as a whole (Multicall3 reverted, or its answer is malformed)."""


@dataclass(frozen=True, slots=True)
class AaveV3Contracts:
    """The market's entry points. ``resolve`` finds them from the PoolAddressesProvider."""

    pool: str
    oracle: str
    pool_configurator: str
    addresses_provider: str
    multicall3: str = MULTICALL3

    @classmethod
    async def resolve(
        cls, rpc: JsonRpc, addresses_provider: str, multicall3: str = MULTICALL3
    ) -> AaveV3Contracts:
        """Look the Pool, oracle and configurator up on the addresses provider (one batch)."""
        provider = addresses_provider.lower()
        ap = abis.addresses_provider()
        fns = [ap["getPool"], ap["getPriceOracle"], ap["getPoolConfigurator"]]
        raw = await rpc.batch(
            [("eth_call", [{"to": provider, "data": f.encode_hex()}, "latest"]) for f in fns]
        )
        pool, oracle, configurator = (
            str(Function(f.name, (), ("address",)).decode_output(r)[0]).lower()
            for f, r in zip(fns, raw, strict=True)
        )
        return cls(pool, oracle, configurator, provider, multicall3.lower())


@dataclass(frozen=True, slots=True)
class ReserveTokens:
    """A reserve's tokens: the addresses whose events move positions in it."""

    asset: str
    a_token: str
    stable_debt_token: str
    variable_debt_token: str


@dataclass(frozen=True, slots=True)
class MarketHints:
    """What a market read asks for: reserves, eMode categories and eMode price sources."""

    assets: tuple[str, ...] = ()
    emode_ids: frozenset[int] = frozenset()
    emode_sources: frozenset[str] = frozenset()

    def covers(self, other: MarketHints) -> bool:
        return (
            set(other.assets) <= set(self.assets)
            and other.emode_ids <= self.emode_ids
            and other.emode_sources <= self.emode_sources
        )

    def union(self, other: MarketHints) -> MarketHints:
        assets = list(self.assets) + [a for a in other.assets if a not in self.assets]
        return MarketHints(
            tuple(assets), self.emode_ids | other.emode_ids, self.emode_sources | other.emode_sources
        )


@dataclass(frozen=True, slots=True)
class MarketRead:
    """A market at one block, as read from the chain.

    ``reserves`` and ``tokens`` are keyed by asset; ``prices`` by asset and eMode price source
    (an asset whose price could not be read is absent); ``sources`` is the oracle's source of
    each asset; ``reserves_list`` is Pool.getReservesList in order.
    """

    reserves_list: tuple[str, ...]
    reserves: Mapping[str, ReserveState]
    tokens: Mapping[str, ReserveTokens]
    prices: Mapping[str, int]
    sources: Mapping[str, str]
    emode_categories: Mapping[int, EModeCategory] = field(default_factory=dict)
    # 3.1+: the Pool's own count of each reserve's underlying, and the end of each reserve's
    # liquidation grace period (unix seconds, 0 if none); 3.3+: each reserve's deficit.
    virtual_balances: Mapping[str, int] = field(default_factory=dict)
    grace_periods: Mapping[str, int] = field(default_factory=dict)
    deficits: Mapping[str, int] = field(default_factory=dict)

    def needs(self) -> MarketHints:
        """The hints a complete read of this market takes."""
        ids = {r.configuration.emode_category for r in self.reserves.values()}
        ids |= set(self.emode_categories)
        ids.discard(0)
        sources = {
            c.price_source for c in self.emode_categories.values() if c.has_price_source
        }
        return MarketHints(self.reserves_list, frozenset(ids), frozenset(sources))


_Call = tuple[str, Function, tuple[Any, ...]]


class MarketReader:
    """Builds and decodes the one-``eth_call`` market read of ``contracts``."""

    def __init__(
        self, contracts: AaveV3Contracts, revision: AaveRevision = AaveRevision.V3_0
    ) -> None:
        self.contracts = contracts
        self.revision = revision
        self._parts = parts_for(revision)
        pool, oracle = abis.pool(), abis.oracle()
        self._reserves_list = pool["getReservesList"]
        self._reserve_data = pool["getReserveData"]
        self._emode = pool["getEModeCategoryData"]
        self._prices = oracle["getAssetsPrices"]
        self._price = oracle["getAssetPrice"]
        self._source = oracle["getSourceOfAsset"]

    def _calls(self, hints: MarketHints) -> list[_Call]:
        c = self.contracts
        calls: list[_Call] = [(c.pool, self._reserves_list, ())]
        calls += [(c.pool, self._reserve_data, (a,)) for a in hints.assets]
        calls += [(c.oracle, self._source, (a,)) for a in hints.assets]
        calls.append((c.oracle, self._prices, (list(hints.assets),)))
        calls += self._parts.emode.calls(c.pool, sorted(hints.emode_ids))
        calls += [(c.oracle, self._price, (s,)) for s in sorted(hints.emode_sources)]
        calls += self._parts.reserves.calls(c.pool, hints.assets)
        return calls

    def request(self, hints: MarketHints, block: BlockId) -> tuple[str, JsonParams]:
        """The ``eth_call`` (method, params) reading the market with ``hints`` at ``block``."""
        return aggregate3_request(self.contracts.multicall3, self._calls(hints), block)

    def decode(self, hints: MarketHints, raw: Any) -> MarketRead:
        """The MarketRead of the answer to ``request(hints, ...)``."""
        results = decode_aggregate3(self._calls(hints), raw)
        it = iter(results)
        listed = next(it)
        if listed is None:
            raise ReadError("Pool.getReservesList failed")
        reserves_list = tuple(str(a).lower() for a in listed[0])
        n = len(hints.assets)
        data = [next(it) for _ in range(n)]
        sources = [next(it) for _ in range(n)]
        prices_raw = next(it)
        ids = sorted(hints.emode_ids)
        emodes = [next(it) for _ in range(len(ids) * len(self._parts.emode.fns))]
        emode_prices = [next(it) for _ in range(len(hints.emode_sources))]
        extras = self._parts.reserves.decode(hints.assets, list(it))

        reserves: dict[str, ReserveState] = {}
        tokens: dict[str, ReserveTokens] = {}
        for asset, row in zip(hints.assets, data, strict=True):
            if row is None or asset not in reserves_list:
                continue  # dropped, or not a reserve (yet)
            (d,) = row
            reserves[asset] = ReserveState(
                asset=asset,
                id=int(d[7]),
                configuration=decode_reserve_configuration(int(d[0][0])),
                liquidity_index=int(d[1]),
                current_liquidity_rate=int(d[2]),
                variable_borrow_index=int(d[3]),
                current_variable_borrow_rate=int(d[4]),
                last_update_timestamp=int(d[6]),
            )
            tokens[asset] = ReserveTokens(
                asset, str(d[8]).lower(), str(d[9]).lower(), str(d[10]).lower()
            )
        prices: dict[str, int] = {}
        if prices_raw is not None:
            for asset, price in zip(hints.assets, prices_raw[0], strict=True):
                prices[asset] = int(price)
        for source, row in zip(sorted(hints.emode_sources), emode_prices, strict=True):
            if row is not None:
                prices[source] = int(row[0])
        categories = self._parts.emode.decode_all(ids, emodes)
        return MarketRead(
            reserves_list=reserves_list,
            reserves=reserves,
            tokens=tokens,
            prices=prices,
            sources={
                a: str(s[0]).lower()
                for a, s in zip(hints.assets, sources, strict=True)
                if s is not None and a in reserves
            },
            emode_categories=categories,
            virtual_balances={a: v for a, v in extras.virtual_balances.items() if a in reserves},
            grace_periods={a: v for a, v in extras.grace_periods.items() if a in reserves},
            deficits={a: v for a, v in extras.deficits.items() if a in reserves},
        )

    async def read(
        self, rpc: JsonRpc, block: BlockId, hints: MarketHints = MarketHints()
    ) -> tuple[MarketRead, MarketHints]:
        """Read the market at ``block``; returns it and the hints that read it completely.

        Repeats the read (rarely) until the hints cover what the answer shows is needed.
        """
        for _ in range(4):
            method, params = self.request(hints, block)
            market = self.decode(hints, await rpc.call(method, params))
            needed = market.needs()
            if hints.covers(needed):
                return market, hints
            hints = hints.union(needed)
        raise ReadError("the market kept changing shape between reads")

    async def resolve_aggregators(
        self, rpc: JsonRpc, sources: Iterable[str], block: BlockId
    ) -> dict[str, str]:
        """The contract that emits ``AnswerUpdated`` behind each oracle source.

        A Chainlink-style proxy answers ``aggregator()``; a wrapper that prices off another
        feed (a rate adapter) answers ``baseFeed()``, whose aggregator is followed in turn.
        Sources that are neither (a fixed-price contract) are left out: the per-block oracle
        read still sees their moves, just not earlier.
        """
        out: dict[str, str] = {}
        todo = {s: s for s in set(sources) if s != ZERO_ADDRESS}
        for _ in range(3):  # proxy → aggregator, or adapter → proxy → aggregator
            if not todo:
                break
            keys = sorted(todo)
            calls: list[_Call] = []
            for k in keys:
                calls += [(todo[k], abis.AGGREGATOR, ()), (todo[k], abis.BASE_FEED, ())]
            method, params = aggregate3_request(self.contracts.multicall3, calls, block)
            results = decode_aggregate3(calls, await rpc.call(method, params))
            nxt: dict[str, str] = {}
            for i, k in enumerate(keys):
                agg, base = results[2 * i], results[2 * i + 1]
                if agg is not None and str(agg[0]).lower() != ZERO_ADDRESS:
                    out[k] = str(agg[0]).lower()
                elif base is not None and str(base[0]).lower() != ZERO_ADDRESS:
                    nxt[k] = str(base[0]).lower()
                else:
                    # A source that is its own aggregator (emits AnswerUpdated itself).
                    out[k] = todo[k]
            todo = nxt
        return out

    async def read_users(
        self,
        rpc: JsonRpc,
        users: Sequence[str],
        tokens: Mapping[str, ReserveTokens],
        block: BlockId,
        *,
        chunk: int = 400,
    ) -> dict[str, UserSnapshot]:
        """Users' state straight from the contracts: configuration, eMode and scaled balances.

        The slow, certain way (one call per user and token): the book's repairs read with it
        the accounts the chain contradicts, and its audit every account in turn
        (``keeper.pipeline.book_repair``).
        """
        # Every call takes the user's address and answers one word: the calldata and the
        # answers are done by hand. 100 accounts of the 6-reserve devnet (3,200 calls) took
        # 157 ms of the event loop through eth_abi, 52 ms so (the rest is Multicall3's own
        # encoding and decoding); the daemon's audit reads a slice every quiet block.
        pool, stable = abis.pool(), abis.stable_debt_token()
        per_user_calls = [(self.contracts.pool, pool["getUserConfiguration"].selector),
                          (self.contracts.pool, pool["getUserEMode"].selector)]
        assets = sorted(tokens)
        has_stable = self.revision.has_stable_debt
        for a in assets:
            t = tokens[a]
            per_user_calls += [(t.a_token, abis.SCALED_BALANCE_OF.selector),
                               (t.variable_debt_token, abis.SCALED_BALANCE_OF.selector)]
            if has_stable:
                per_user_calls += [(t.stable_debt_token, stable[name].selector) for name in
                                   ("principalBalanceOf", "getUserStableRate",
                                    "getUserLastUpdated")]
        per_asset = 5 if has_stable else 2
        per_user = len(per_user_calls)
        out: dict[str, UserSnapshot] = {}
        step = max(1, chunk // per_user)
        for lo in range(0, len(users), step):
            part = users[lo:lo + step]
            encoded: list[tuple[str, bytes]] = []
            for u in part:
                arg = _address_word(u)
                encoded += [(target, selector + arg) for target, selector in per_user_calls]
            method, params = aggregate3_call(self.contracts.multicall3, encoded, block,
                                             allow_failure=True)
            words = _single_words(await rpc.call(method, params), len(encoded))
            for j, u in enumerate(part):
                answered = words[j * per_user:(j + 1) * per_user]
                row = [w for w in answered if w is not None]
                if len(row) != per_user:
                    raise ReadError(f"reading user {u} failed")
                positions: dict[str, UserReserve] = {}
                for k, a in enumerate(assets):
                    cells = row[2 + per_asset * k: 2 + per_asset * (k + 1)]
                    s_a, s_v, p, r, ts = (*cells, 0, 0, 0)[:5]
                    if s_a or s_v or p:
                        positions[a] = UserReserve(s_a, s_v, p, r, ts)
                out[u] = UserSnapshot(UserConfiguration(row[0]), row[1], positions)
        return out


@dataclass(frozen=True, slots=True)
class UserSnapshot:
    """A user's state as the contracts hold it (see ``MarketReader.read_users``)."""

    configuration: UserConfiguration
    emode_category: int
    positions: Mapping[str, UserReserve]


def aggregate3_request(
    multicall3: str, calls: Sequence[_Call], block: BlockId
) -> tuple[str, JsonParams]:
    """``eth_call`` of Multicall3 ``aggregate3`` with ``allowFailure`` on every call: one
    failing read (a broken feed) must not hide the others."""
    encoded = [(to, fn.encode(*args)) for to, fn, args in calls]
    return aggregate3_call(multicall3, encoded, block, allow_failure=True)


def _address_word(address: str) -> bytes:
    """An address as one ABI word."""
    raw = bytes.fromhex(address[2:] if address[:2] in ("0x", "0X") else address)
    if len(raw) != 20:
        raise ReadError(f"not an address: {address!r:.60}")
    return bytes(12) + raw


def _single_words(raw: Any, calls: int) -> list[int | None]:
    """The one-word answers of an ``aggregate3`` of ``calls`` calls: each an int, or None
    where the call failed or answered less than a word."""
    return [int.from_bytes(data[:32], "big") if ok and len(data) >= 32 else None
            for ok, data in _aggregate3_rows(raw, calls)]


def _aggregate3_rows(raw: Any, calls: int) -> list[tuple[bool, bytes]]:
    """``aggregate3``'s (success, return data) per call, from an ``eth_call`` answer."""
    if not isinstance(raw, str):
        raise ReadError(f"aggregate3: unexpected answer {raw!r:.80}")
    try:
        rows = decode_aggregate3_results(hexstr_to_bytes(raw))
    except (MulticallError, ValueError) as exc:
        raise ReadError(f"aggregate3: malformed answer: {exc}") from exc
    if len(rows) != calls:
        raise ReadError(f"aggregate3: {len(rows)} results for {calls} calls")
    return rows


def decode_aggregate3(calls: Sequence[_Call], raw: Any) -> list[tuple[Any, ...] | None]:
    """Each call's decoded output, or None where it failed (or answered garbage)."""
    rows = _aggregate3_rows(raw, len(calls))
    out: list[tuple[Any, ...] | None] = []
    for (_, fn, _), (ok, data) in zip(calls, rows, strict=True):
        if not ok:
            out.append(None)
            continue
        try:
            out.append(fn.decode_output(data))
        except DecodingError:  # short or odd data (a call to a non-contract): treat as failed
            out.append(None)
    return out
