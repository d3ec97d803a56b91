"""The devnet runs the real Aave V3: deploy, a 300-borrower scenario, a plain liquidation."""

from __future__ import annotations

from typing import Any

from keeper.chain.rpc import HttpRpc
from keeper.contracts import artifacts
from keeper.devnet.anvil import Anvil
from keeper.devnet.driver import Devnet
from keeper.devnet.manifest import MULTICALL3
from keeper.devnet.scenario import crash, plan_population, seed_population
from keeper.devnet.txs import TxSender

WAD = 10**18
POOL = artifacts.aave("Pool").abi
DATA_PROVIDER = artifacts.aave("AaveProtocolDataProvider").abi
ERC20 = artifacts.aave("MintableERC20").abi
PROXY = artifacts.ours("FeedProxy").abi
LIQUIDATOR = "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"  # anvil account 2


def percent_mul(value: int, pct: int) -> int:
    return (value * pct + 5_000) // 10_000


def percent_div(value: int, pct: int) -> int:
    return (value * 10_000 + pct // 2) // pct


async def test_deploy_configures_every_reserve(devnet: Devnet) -> None:
    m = devnet.m
    (listed,) = await devnet.tx.call(m.pool, POOL["getReservesList"])
    assert [a.lower() for a in listed] == [r.address for r in m.reserves]
    assert len(m.reserves) >= 5
    assert {r.decimals for r in m.reserves} >= {6, 8, 18}
    for r in m.reserves:
        cfg = await devnet.tx.call(m.data_provider, DATA_PROVIDER["getReserveConfigurationData"], r.address)
        decimals, ltv, threshold, bonus, factor, collateral_on, borrowing_on, _stable, active, frozen = cfg
        assert (decimals, ltv, threshold, bonus, factor) == (
            r.decimals, r.ltv, r.liquidation_threshold, r.liquidation_bonus, r.reserve_factor)
        assert collateral_on and borrowing_on and active and not frozen
        (fee,) = await devnet.tx.call(m.data_provider, DATA_PROVIDER["getLiquidationProtocolFee"], r.address)
        assert fee == r.liquidation_protocol_fee
        (flash_on,) = await devnet.tx.call(m.data_provider, DATA_PROVIDER["getFlashLoanEnabled"], r.address)
        assert flash_on
        if r.feed_kind == "chainlink":
            (agg,) = await devnet.tx.call(r.price_source, PROXY["aggregator"])
            assert agg.lower() == r.aggregator
    (premium,) = await devnet.tx.call(m.pool, POOL["FLASHLOAN_PREMIUM_TOTAL"])
    assert premium == 5
    assert len(await devnet.rpc.call("eth_getCode", [MULTICALL3, "latest"])) > 100
    # Every pool is priced at the oracle (within the rounding of the initial mint).
    prices = await devnet.prices()
    # wstETH's rate adapter grows ≈ 3.5% a year from the deploy on, and the pools were minted
    # at the deploy's price: the drift allowed is that growth over the time since (a state
    # restored later runs at a later timestamp), on top of the mint's rounding.
    deployed = await devnet.rpc.call("eth_getBlockByNumber", [hex(m.deploy_block), False])
    latest = await devnet.rpc.call("eth_getBlockByNumber", ["latest", False])
    years = (int(latest["timestamp"], 16) - int(deployed["timestamp"], 16)) / (365 * 86_400)
    for key in m.pairs:
        a, b = key.split("/")
        ra, rb = await devnet.pair_reserves(a, b)
        da, db = m.reserve(a).decimals, m.reserve(b).decimals
        pool_price = (rb / 10**db) / (ra / 10**da)
        oracle_price = prices[a] / prices[b]
        drift = 0.04 * years if "wstETH" in key else 0.0
        assert abs(pool_price / oracle_price - 1) < 1e-5 + drift, key


async def test_rate_adapter_price_grows_without_events(devnet: Devnet) -> None:
    before = (await devnet.prices())["wstETH"]
    await devnet.increase_time(365 * 24 * 3600)
    after = (await devnet.prices())["wstETH"]
    assert after > before * 1.02  # ≈ 3.5% a year on top of WETH's price


async def test_scenario_300_borrowers_and_crash(devnet: Devnet) -> None:
    plans = plan_population(42, 300, devnet.m, await devnet.prices())
    assert plans == plan_population(42, 300, devnet.m, await devnet.prices())  # deterministic
    await seed_population(devnet, plans)
    users = [p.address for p in plans]
    data = await devnet.account_data(users)
    hfs = [d.health_factor / WAD for d in data]
    assert all(d.total_debt_base > 0 for d in data)
    assert min(hfs) > 1.0 and min(hfs) < 1.1 and max(hfs) > 2.0
    emode_users = [p for p in plans if p.emode]
    assert emode_users
    (cat,) = await devnet.tx.call(devnet.m.pool, POOL["getUserEMode"], emode_users[0].address)
    assert cat == emode_users[0].emode
    final = await crash(devnet, {"WETH": 0.75}, blocks=3)
    assert final["WETH"] == 1500 * 10**8
    after = await devnet.account_data(users)
    under = [d for d in after if d.health_factor < WAD]
    assert 0 < len(under) < len(users)
    # The AMM followed the oracle down.
    weth, usdc = await devnet.pair_reserves("WETH", "USDC")
    assert abs((usdc / 1e6) / (weth / 1e18) / 1500 - 1) < 0.005


async def test_plain_liquidation_pays_aave_formula_to_the_wei(devnet: Devnet) -> None:
    m, rpc = devnet.m, devnet.rpc
    weth, usdc = m.reserve("WETH"), m.reserve("USDC")
    user = "0x000000000000000000000000000000000000b0b1"
    await devnet.fund([user, LIQUIDATOR])
    await devnet.send_many(devnet.users.deposit_txs(m.deployer, "USDC", 1_000_000 * 10**6))
    await devnet.send_many([*devnet.users.deposit_txs(user, "WETH", 10 * WAD),
                            devnet.users.tx_borrow(user, "USDC", 15_000 * 10**6)])
    assert 1.09 < (await devnet.account_data([user]))[0].health_factor / WAD < 1.11
    await devnet.set_price("WETH", 1800 * 10**8)
    (hf_data,) = await devnet.account_data([user])
    assert 0.95 * WAD <= hf_data.health_factor < WAD  # close factor 50%

    await devnet.send_many([devnet.users.tx_mint(LIQUIDATOR, "USDC", 20_000 * 10**6),
                            devnet.users.tx_approve(LIQUIDATOR, "USDC")])
    # Freeze time: read the debt at T, liquidate in a block at the same T.
    t = int((await rpc.call("eth_getBlockByNumber", ["latest", False]))["timestamp"], 16) + 10
    await rpc.call("evm_setNextBlockTimestamp", [t])
    await rpc.call("evm_mine")
    (debt,) = await devnet.tx.call(usdc.variable_debt_token, ERC20["balanceOf"], user)
    usdc_before = await devnet.balance_of("USDC", LIQUIDATOR)
    weth_before = await devnet.balance_of("WETH", LIQUIDATOR)
    treasury_before = await devnet.balance_of(weth.a_token, m.treasury)
    await rpc.call("evm_setNextBlockTimestamp", [t])
    await devnet.tx.send(m.pool, POOL["liquidationCall"].encode(
        weth.address, usdc.address, user, 2**256 - 1, False), sender=LIQUIDATOR)

    repaid = usdc_before - await devnet.balance_of("USDC", LIQUIDATOR)
    received = await devnet.balance_of("WETH", LIQUIDATOR) - weth_before
    assert repaid == percent_mul(debt, 5000)
    # Aave's formula: repaid × debt price / collateral price × bonus, less the protocol's share
    # of the bonus.
    prices = await devnet.prices()
    base = prices["USDC"] * repaid * 10**18 // (prices["WETH"] * 10**6)
    with_bonus = percent_mul(base, weth.liquidation_bonus)
    bonus = with_bonus - percent_div(with_bonus, weth.liquidation_bonus)
    fee = percent_mul(bonus, weth.liquidation_protocol_fee)
    assert received == with_bonus - fee
    assert 4.354 * WAD < received < 4.355 * WAD  # 7500 × 1.05 / 1800 less 10% of the bonus
    treasury_gain = await devnet.balance_of(weth.a_token, m.treasury) - treasury_before
    assert abs(treasury_gain - fee) <= 1  # aToken balances round through the liquidity index


async def test_a_devnet_send_stuck_above_the_chains_nonce_is_sent_again_at_it(
        anvil: Anvil) -> None:
    # After an evm_revert, anvil's pool may hand out a nonce counted on the reverted blocks:
    # on an automining node such a transaction waits forever. The devnet's sender sees it
    # (nonce above the chain's, nothing mined for it) and sends it again at the chain's nonce.
    async with HttpRpc(anvil.url) as rpc:
        me = (await rpc.call("eth_accounts"))[0]

        class Skewed:
            """The node as it behaves after such a revert: its first nonce is 3 ahead."""

            skewed = False

            async def call(self, method: str, params: Any = (), **kw: Any) -> Any:
                if method == "eth_sendTransaction" and not self.skewed:
                    self.skewed = True
                    params = [params[0] | {"nonce": hex(3)}]
                return await rpc.call(method, params, **kw)

        tx = TxSender(Skewed(), me)  # type: ignore[arg-type]
        receipt = await tx.send(me, b"", what="self-transfer")
        assert int(receipt["status"], 16) == 1 and int(receipt["blockNumber"], 16) == 1
        assert int(await rpc.call("eth_getTransactionCount", [me, "latest"]), 16) == 1


async def test_a_devnet_send_the_node_lost_is_sent_again(anvil: Anvil) -> None:
    # The node answered the send and then neither mined nor held it (twice in CI, in the
    # parallel phase): after the nudge, it is sent again at the chain's nonce.
    async with HttpRpc(anvil.url) as rpc:
        me = (await rpc.call("eth_accounts"))[0]
        await rpc.call("evm_setAutomine", [False])

        class Losing:
            """Drops the first transaction it is handed, then mines as an automining node."""

            lost = False

            async def call(self, method: str, params: Any = (), **kw: Any) -> Any:
                if method == "anvil_getAutomine":
                    return True
                result = await rpc.call(method, params, **kw)
                if method == "eth_sendTransaction":
                    if not self.lost:
                        self.lost = True
                        await rpc.call("anvil_dropTransaction", [result])
                    else:
                        await rpc.call("evm_mine")
                return result

        receipt = await TxSender(Losing(), me).send(me, b"", what="self-transfer")  # type: ignore[arg-type]
        assert int(receipt["status"], 16) == 1
