"""A float64 health-factor prefilter for very many accounts at once.

This is a *prefilter*: it ranks and selects candidates fast; it never decides. Every hit is
recomputed with ``keeper.domain.account.calculate_user_account_data`` (exact, integer, to the
wei) and then by the chain in simulation before anything is sent.

Model. For account i and asset j, with whole-token amounts and the price p_j:

    collateral_i = sum_j C_ij p_j            (C: collateral in whole tokens, enabled only)
    weighted_i   = sum_j C_ij T_ij p_j       (T: liquidation threshold in bps, eMode applied)
    debt_i       = sum_j D_ij p_j            (D: debt in whole tokens)
    HF_i         = floor(weighted_i / collateral_i) * collateral_i / 1e4 / debt_i

The floor mirrors the integer average liquidation threshold of GenericLogic (it alone can move
the exact HF by up to 1/avgLT, about 1.2e-4 relative). What the floats cannot see: the per-asset
rounding of base-currency values (under one base unit each) and a weighted/collateral ratio that
lies within 1e-7 *below* an integer (the float may floor it up). Choose the selection margin
with that in mind; ``DEFAULT_MARGIN`` does.

All arrays are stored asset-major (shape (assets, accounts)) so that one asset's column is
contiguous: a price move touches only that asset's holders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]

DEFAULT_MARGIN = 1e-3
"""Relative head-room on HF < 1 that covers every float-vs-exact difference described above."""

# Tolerance before flooring the average threshold: float sums of non-negative terms are off by
# ~1e-15 relative, i.e. ~1e-11 absolute on a ratio near 1e4; 1e-7 is comfortably above that.
_FLOOR_TOLERANCE = 1e-7


class HealthFactorPrefilter:
    """Float health factors for N accounts over M assets, with incremental price updates.

    The one stateful object of ``keeper.domain``: it owns its arrays and updates them in place,
    because copying millions of floats per price tick would cost more than the update itself.
    """

    def __init__(
        self,
        collateral: FloatArray,
        thresholds: FloatArray,
        debt: FloatArray,
        prices: FloatArray,
    ) -> None:
        """Build from (accounts, assets) arrays of whole-token collateral and debt.

        ``thresholds`` is (assets,) or (accounts, assets), in basis points, the value that
        applies to each account (its eMode threshold where it is in eMode, 0 where the asset is
        not enabled as collateral). ``prices`` is (assets,), in any one unit for all assets.
        """
        c = np.asarray(collateral, dtype=np.float64)
        d = np.asarray(debt, dtype=np.float64)
        t = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), c.shape)
        if c.shape != d.shape or c.ndim != 2:
            raise ValueError(f"collateral {c.shape} and debt {d.shape} must be equal 2-D shapes")
        n, m = c.shape
        # Asset-major: one asset's amounts are contiguous (measured faster than one (n, 3)
        # array of sums: the health factor then runs on contiguous, not strided, columns).
        self._c: FloatArray = np.ascontiguousarray(c.T)
        self._w: FloatArray = np.ascontiguousarray((c * t).T)
        self._d: FloatArray = np.ascontiguousarray(d.T)
        self._prices: FloatArray = np.array(prices, dtype=np.float64)
        if self._prices.shape != (m,):
            raise ValueError(f"prices {self._prices.shape} do not match {m} assets")
        self._holders: dict[int, tuple[IndexArray, FloatArray, FloatArray, FloatArray]] = {}
        self._collateral: FloatArray = np.empty(n)
        self._weighted: FloatArray = np.empty(n)
        self._debt: FloatArray = np.empty(n)
        self._hf: FloatArray = np.empty(n)
        self.recompute()

    @property
    def prices(self) -> FloatArray:
        """The prices the health factors currently reflect (read-only view)."""
        view = self._prices.view()
        view.flags.writeable = False
        return view

    @property
    def health_factors(self) -> FloatArray:
        """Float health factor per account (``inf`` without debt); read-only view."""
        view = self._hf.view()
        view.flags.writeable = False
        return view

    def recompute(self) -> None:
        """Evaluate every account from scratch (three matrix-vector products)."""
        p = self._prices
        np.matmul(p, self._c, out=self._collateral)
        np.matmul(p, self._w, out=self._weighted)
        np.matmul(p, self._d, out=self._debt)
        self._hf[:] = _health_factor(self._collateral, self._weighted, self._debt)

    def holders(self, asset: int) -> IndexArray:
        """Indexes of the accounts with collateral or debt in ``asset`` (cached)."""
        return self._holder_amounts(asset)[0]

    def _holder_amounts(self, asset: int) -> tuple[IndexArray, FloatArray, FloatArray, FloatArray]:
        # The holders' amounts of this asset, gathered once into contiguous arrays so that a
        # price tick only gathers and scatters the per-account sums.
        cached = self._holders.get(asset)
        if cached is None:
            idx = np.flatnonzero((self._c[asset] != 0) | (self._d[asset] != 0))
            cached = (idx, self._c[asset, idx], self._w[asset, idx], self._d[asset, idx])
            self._holders[asset] = cached
        return cached

    def set_price(self, asset: int, price: float) -> IndexArray:
        """Move one asset's price and re-evaluate only its holders; returns their indexes.

        The sums are adjusted by (new - old) * amount. Every term is non-negative, so repeated
        updates keep the relative error at a few ulps per update; ``recompute`` resets it.
        """
        idx, c, w, d = self._holder_amounts(asset)
        delta = float(price) - float(self._prices[asset])
        self._prices[asset] = price
        if delta == 0.0 or idx.size == 0:
            return idx
        collateral = self._collateral[idx]
        collateral += c * delta
        weighted = self._weighted[idx]
        weighted += w * delta
        debt = self._debt[idx]
        debt += d * delta
        self._collateral[idx] = collateral
        self._weighted[idx] = weighted
        self._debt[idx] = debt
        self._hf[idx] = _health_factor(collateral, weighted, debt)
        return idx

    def set_account(
        self, account: int, collateral: FloatArray, thresholds: FloatArray, debt: FloatArray
    ) -> None:
        """Replace one account's (assets,) rows, e.g. after a Supply/Borrow/Repay event."""
        c = np.asarray(collateral, dtype=np.float64)
        self._c[:, account] = c
        self._w[:, account] = c * np.asarray(thresholds, dtype=np.float64)
        self._d[:, account] = np.asarray(debt, dtype=np.float64)
        self._holders.clear()
        one = slice(account, account + 1)
        p = self._prices
        self._collateral[one] = p @ self._c[:, one]
        self._weighted[one] = p @ self._w[:, one]
        self._debt[one] = p @ self._d[:, one]
        self._hf[one] = _health_factor(self._collateral[one], self._weighted[one], self._debt[one])

    def candidates(self, margin: float = DEFAULT_MARGIN) -> IndexArray:
        """Accounts whose float HF is below ``1 + margin``, lowest HF first."""
        idx = np.flatnonzero(self._hf < 1.0 + margin)
        return idx[np.argsort(self._hf[idx], kind="stable")]

    def below(self, limit: float) -> tuple[IndexArray, FloatArray, FloatArray, FloatArray]:
        """Accounts whose float HF is below ``limit``, with their float HF, collateral and
        debt (in the prices' unit)."""
        idx = np.flatnonzero(self._hf < limit)
        return idx, self._hf[idx], self._collateral[idx], self._debt[idx]

    def liquidation_prices(self, asset: int) -> LiquidationPriceIndex:
        """The sorted per-account prices of ``asset`` at which HF crosses 1, others fixed."""
        idx, _, w, d = self._holder_amounts(asset)
        p = self._prices[asset]
        # Sums without this asset's contribution, thresholds as fractions.
        weighted_rest = (self._weighted[idx] - w * p) / 1e4
        debt_rest = self._debt[idx] - d * p
        slope = w / 1e4 - d
        # HF(x) = 1  <=>  weighted_rest + w x = debt_rest + d x  <=>  x = (debt_rest - w_rest)/slope
        with np.errstate(divide="ignore", invalid="ignore"):
            crossing = (debt_rest - weighted_rest) / slope
        # slope > 0: collateral-heavy in this asset, liquidatable when the price falls below;
        # slope < 0: debt-heavy, liquidatable when it rises above; slope == 0: price-neutral.
        falls = slope > 0
        rises = slope < 0
        return LiquidationPriceIndex.from_crossings(
            asset=asset,
            falling_accounts=idx[falls],
            falling_prices=crossing[falls],
            rising_accounts=idx[rises],
            rising_prices=crossing[rises],
        )


def _health_factor(collateral: FloatArray, weighted: FloatArray, debt: FloatArray) -> FloatArray:
    # In-place steps on one buffer: this runs on up to millions of accounts per price tick.
    with np.errstate(divide="ignore", invalid="ignore"):
        hf = weighted / collateral
        hf += _FLOOR_TOLERANCE
        np.floor(hf, out=hf)
        hf *= collateral
        hf /= debt
        hf *= 1e-4
    np.copyto(hf, 0.0, where=collateral == 0)
    np.copyto(hf, np.inf, where=debt == 0)
    return hf


@dataclass(frozen=True, slots=True)
class LiquidationPriceIndex:
    """For one asset: accounts sorted by the price at which they become liquidatable.

    Built with the other prices fixed and without the integer floor of the average threshold
    (the crossing of the linear model); rebuild it when another price moves. Query answers are
    prefilter hits, to be confirmed like any other.
    """

    asset: int
    falling_prices: FloatArray
    """Ascending; account k is liquidatable when the price is below ``falling_prices[k]``."""
    falling_accounts: IndexArray
    rising_prices: FloatArray
    """Ascending; account k is liquidatable when the price is above ``rising_prices[k]``."""
    rising_accounts: IndexArray

    @classmethod
    def from_crossings(
        cls,
        *,
        asset: int,
        falling_accounts: IndexArray,
        falling_prices: FloatArray,
        rising_accounts: IndexArray,
        rising_prices: FloatArray,
    ) -> LiquidationPriceIndex:
        """Sort the crossings (the constructor used by HealthFactorPrefilter)."""
        f = np.argsort(falling_prices, kind="stable")
        r = np.argsort(rising_prices, kind="stable")
        return cls(
            asset=asset,
            falling_prices=falling_prices[f],
            falling_accounts=falling_accounts[f],
            rising_prices=rising_prices[r],
            rising_accounts=rising_accounts[r],
        )

    def liquidatable_at(self, price: float) -> IndexArray:
        """Accounts liquidatable (by the linear model) if the asset's price were ``price``."""
        below = np.searchsorted(self.falling_prices, price, side="right")
        above = np.searchsorted(self.rising_prices, price, side="left")
        return np.concatenate((self.falling_accounts[below:], self.rising_accounts[:above]))
