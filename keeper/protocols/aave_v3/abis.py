"""The ABIs the keeper reads Aave V3.0 with, from the npm ``@aave/core-v3`` build artifacts.

Loaded lazily (first use reads node_modules) and cached. Feeds use our own contracts' ABIs
(contracts/feeds): they follow Chainlink's event and function signatures, so the same topics
match Chainlink aggregators and EACAggregatorProxy on real chains.
"""

from __future__ import annotations

import functools

from keeper.chain.abi import Abi, Function
from keeper.contracts import artifacts

MULTICALL3 = "0xca11bde05977b3631167028862be2a173976ca11"
"""Multicall3's address on every chain that has it, and on the devnet."""


@functools.cache
def pool() -> Abi:
    """Pool (its ABI is IPool's plus the implementation's extras)."""
    return artifacts.aave("Pool").abi


@functools.cache
def pool_configurator() -> Abi:
    return artifacts.aave("PoolConfigurator").abi


@functools.cache
def oracle() -> Abi:
    return artifacts.aave("AaveOracle").abi


@functools.cache
def addresses_provider() -> Abi:
    return artifacts.aave("PoolAddressesProvider").abi


@functools.cache
def data_provider() -> Abi:
    return artifacts.aave("AaveProtocolDataProvider").abi


@functools.cache
def a_token() -> Abi:
    return artifacts.aave("AToken").abi


@functools.cache
def variable_debt_token() -> Abi:
    return artifacts.aave("VariableDebtToken").abi


@functools.cache
def stable_debt_token() -> Abi:
    return artifacts.aave("StableDebtToken").abi


@functools.cache
def price_feed() -> Abi:
    """A Chainlink-style aggregator: ``AnswerUpdated``."""
    return artifacts.ours("PriceFeed").abi


@functools.cache
def feed_proxy() -> Abi:
    """A Chainlink-style proxy: ``aggregator()`` and ``AggregatorConfirmed``."""
    return artifacts.ours("FeedProxy").abi


# Written out rather than compiled: Multicall3's interface is fixed on every chain, and the
# keeper must not need solc to read a market.
AGGREGATE3 = Function("aggregate3", ("(address,bool,bytes)[]",), ("(bool,bytes)[]",))
AGGREGATOR = Function("aggregator", (), ("address",))
BASE_FEED = Function("baseFeed", (), ("address",))
SCALED_BALANCE_OF = Function("scaledBalanceOf", ("address",), ("uint256",))

# Pool reads added after v3.0, written out so one keeper reads every revision (the unit tests
# check them against the 3.6 build).
POOL_REVISION = Function("POOL_REVISION", (), ("uint256",))
EMODE_COLLATERAL_CONFIG = Function(
    "getEModeCategoryCollateralConfig", ("uint8",), ("(uint16,uint16,uint16)",))
EMODE_LABEL = Function("getEModeCategoryLabel", ("uint8",), ("string",))
EMODE_COLLATERAL_BITMAP = Function("getEModeCategoryCollateralBitmap", ("uint8",), ("uint128",))
EMODE_BORROWABLE_BITMAP = Function("getEModeCategoryBorrowableBitmap", ("uint8",), ("uint128",))
EMODE_LTVZERO_BITMAP = Function("getEModeCategoryLtvzeroBitmap", ("uint8",), ("uint128",))
VIRTUAL_UNDERLYING_BALANCE = Function("getVirtualUnderlyingBalance", ("address",), ("uint128",))
LIQUIDATION_GRACE_PERIOD = Function("getLiquidationGracePeriod", ("address",), ("uint40",))
RESERVE_DEFICIT = Function("getReserveDeficit", ("address",), ("uint256",))
