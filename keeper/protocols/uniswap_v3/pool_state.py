"""Read the state a Uniswap V3 swap reads: slot0, liquidity and the initialized ticks near the
price, as ``PoolSnapshot``s for the pure quoting core (keeper.domain.uniswap_v3.pool).

How it stays current: by re-reading, not from ``Swap``/``Mint``/``Burn`` events. Every call
reads every pool it is asked for again at the block given, in one Multicall3 ``aggregate3``:
slot0, liquidity, the tick bitmap words within ``window_words`` of the tick last seen, and
``ticks(i)`` of every tick those words had initialized. A second batch is needed only when the
first shows something new: a pool never seen (its immutables: tokens, fee, tick spacing), a
price that moved to another word, or a newly initialized tick (a Mint at a fresh tick). Why
not events: an exact quote needs every liquidityNet in the window right, and rebuilding them
from logs means trusting that none was missed or reorged away; one eth_call per block per
plan is cheap, and the state read is exactly the state at that block.

A pool that does not exist (no code at its CREATE2 address) is remembered as absent for the
reader's life: a pool created later is seen after a restart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from keeper.chain.abi import Function
from keeper.chain.multicall import MULTICALL3, Call, MulticallError, aggregate3
from keeper.chain.rpc import JsonRpc
from keeper.chain.types import BlockId
from keeper.domain.uniswap_v3.pool import PoolSnapshot
from keeper.domain.uniswap_v3.tick_bitmap import initialized_ticks, word_of_tick

_TOKEN0 = Function("token0", (), ("address",))
_TOKEN1 = Function("token1", (), ("address",))
_FEE = Function("fee", (), ("uint24",))
_TICK_SPACING = Function("tickSpacing", (), ("int24",))
_SLOT0 = Function("slot0", (), ("uint160", "int24", "uint16", "uint16", "uint16", "uint8", "bool"))
_LIQUIDITY = Function("liquidity", (), ("uint128",))
_TICK_BITMAP = Function("tickBitmap", ("int16",), ("uint256",))
_TICKS = Function("ticks", ("int24",),
                  ("uint128", "int128", "uint256", "uint256", "int56", "uint160", "uint32", "bool"))

DEFAULT_WINDOW_WORDS = 2
"""Bitmap words read on each side of the price's word: with a 0.05% pool's spacing of 10 a word
spans 2,560 ticks (a factor of 1.29 in price), so ±2 words cover a move of more than 2x."""


@dataclass(frozen=True, slots=True)
class _Static:
    token0: str
    token1: str
    fee: int
    tick_spacing: int


@dataclass(slots=True)
class _Seen:
    static: _Static
    tick: int
    words: dict[int, int]


class V3PoolReader:
    """Snapshots of Uniswap V3 pools at a block, in one Multicall3 batch when nothing is new."""

    def __init__(self, rpc: JsonRpc, *, window_words: int = DEFAULT_WINDOW_WORDS,
                 multicall: str = MULTICALL3, timeout: float | None = None) -> None:
        self.rpc = rpc
        self.window_words = window_words
        self.multicall = multicall
        self.timeout = timeout
        self._seen: dict[str, _Seen] = {}
        self._absent: set[str] = set()

    async def read(self, pools: Iterable[str], block: BlockId = "latest") -> list[PoolSnapshot]:
        """The snapshot of every pool of ``pools`` that exists, at ``block``, in their order."""
        wanted = [p.lower() for p in dict.fromkeys(pools) if p.lower() not in self._absent]
        await self._learn([p for p in wanted if p not in self._seen], block)
        wanted = [p for p in wanted if p in self._seen]
        snaps = await self._read_known(wanted, block)
        stale = [s for s in snaps if not self._complete(s)]
        if stale:
            # The price left its word or a tick was initialized since the last read.
            again = {s.address: s for s in await self._read_known([s.address for s in stale],
                                                                  block)}
            snaps = [again.get(s.address, s) for s in snaps]
        return snaps

    async def _call(self, calls: Sequence[Call], block: BlockId) -> list[bytes | None]:
        results = await aggregate3(self.rpc, calls, block=block, address=self.multicall,
                                   timeout=self.timeout)
        return [data if ok and data else None for ok, data in results]

    async def _learn(self, pools: Sequence[str], block: BlockId) -> None:
        """Immutables and the current tick of pools never seen (absent ones remembered)."""
        fns = (_TOKEN0, _TOKEN1, _FEE, _TICK_SPACING, _SLOT0)
        answers = await self._call([(p, fn.encode()) for p in pools for fn in fns], block)
        for i, pool in enumerate(pools):
            raw = answers[i * len(fns):(i + 1) * len(fns)]
            if any(r is None for r in raw):
                self._absent.add(pool)
                continue
            (t0,), (t1,), (fee,), (spacing,), slot0 = (
                fn.decode_output(r) for fn, r in zip(fns, raw, strict=True) if r is not None)
            static = _Static(str(t0).lower(), str(t1).lower(), int(fee), int(spacing))
            self._seen[pool] = _Seen(static, int(slot0[1]), {})

    def _window(self, seen: _Seen) -> list[int]:
        centre = word_of_tick(seen.tick, seen.static.tick_spacing)
        return list(range(centre - self.window_words, centre + self.window_words + 1))

    async def _read_known(self, pools: Sequence[str], block: BlockId) -> list[PoolSnapshot]:
        calls: list[Call] = []
        plan: list[tuple[str, list[int], list[int]]] = []
        for pool in pools:
            seen = self._seen[pool]
            words = self._window(seen)
            ticks = [t for w in words
                     for t in initialized_ticks(w, seen.words.get(w, 0), seen.static.tick_spacing)]
            calls += [(pool, _SLOT0.encode()), (pool, _LIQUIDITY.encode())]
            calls += [(pool, _TICK_BITMAP.encode(w)) for w in words]
            calls += [(pool, _TICKS.encode(t)) for t in ticks]
            plan.append((pool, words, ticks))
        answers = await self._call(calls, block)
        out: list[PoolSnapshot] = []
        at = 0
        for pool, words, ticks in plan:
            n = 2 + len(words) + len(ticks)
            out.append(self._decode(pool, words, ticks, answers[at:at + n]))
            at += n
        return out

    def _decode(self, pool: str, words: list[int], ticks: list[int],
                raw: Sequence[bytes | None]) -> PoolSnapshot:
        seen = self._seen[pool]
        slot0 = _SLOT0.decode_output(_need(raw[0], pool, "slot0"))
        (liquidity,) = _LIQUIDITY.decode_output(_need(raw[1], pool, "liquidity"))
        bitmap = {w: int(_TICK_BITMAP.decode_output(_need(r, pool, "tickBitmap"))[0])
                  for w, r in zip(words, raw[2:2 + len(words)], strict=True)}
        nets = {t: int(_TICKS.decode_output(_need(r, pool, "ticks"))[1])
                for t, r in zip(ticks, raw[2 + len(words):], strict=True)}
        seen.tick, seen.words = int(slot0[1]), bitmap
        s = seen.static
        return PoolSnapshot(pool, s.token0, s.token1, s.fee, s.tick_spacing, int(slot0[0]),
                            int(slot0[1]), int(liquidity), bitmap, nets)

    def _complete(self, snap: PoolSnapshot) -> bool:
        """Whether the snapshot holds the window around its own tick and every net in it."""
        if sorted(snap.words) != self._window(self._seen[snap.address]):
            return False
        return all(t in snap.liquidity_net for w, word in snap.words.items()
                   for t in initialized_ticks(w, word, snap.tick_spacing))


def _need(raw: bytes | None, pool: str, what: str) -> bytes:
    if raw is None:
        raise MulticallError(f"Uniswap V3 pool {pool}: {what} failed")
    return raw

