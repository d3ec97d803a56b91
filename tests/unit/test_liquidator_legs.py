"""LiquidationParams with swap legs and flash sources, their calldata, and predict_outcome over
V2 and (injected) V3 hop quotes — pure, no chain."""

from __future__ import annotations

import pytest
from eth_abi import decode as abi_decode

from keeper.domain.amm import get_amount_out, get_reserves
from keeper.domain.liquidation import LiquidationQuote
from keeper.domain.plan import FlashSource, LiquidationParams, LiquidatorParamsError, V3FlashPool
from keeper.domain.swap_route import SwapHop, SwapLeg, Venue
from keeper.protocols.aave_v3.liquidator import (
    contract_legs,
    encode_liquidate,
    leg_quoter,
    predict_outcome,
)

WETH, USDC, DAI, USER = ("0x" + c * 40 for c in "1234")
P_WU, P_WD, P_DU, V3_WU, V3_DU = ("0x" + c * 40 for c in "abcde")
ORDER = ("(address,address,address,uint256,(uint256,(uint8,address,uint24)[])[],uint256,uint8,"
         "address,uint24,uint256)")
RESERVES = {(WETH, USDC): (1_000 * 10**18, 1_800_000 * 10**6),
            (WETH, DAI): (1_000 * 10**18, 1_800_000 * 10**18),
            (USDC, DAI): (1_000_000 * 10**6, 1_000_000 * 10**18)}


def v2(pool: str, a: str, b: str) -> SwapHop:
    return SwapHop(Venue.UNISWAP_V2, pool, a, b)


def v3(pool: str, a: str, b: str, fee: int = 500) -> SwapHop:
    return SwapHop(Venue.UNISWAP_V3, pool, a, b, fee)


def quote(seized: int = 4 * 10**18, repaid: int = 7_000 * 10**6) -> LiquidationQuote:
    return LiquidationQuote(debt_to_cover_actual=repaid, collateral_to_liquidator=seized,
                            protocol_fee_collateral=0, health_factor=0,
                            max_liquidatable_debt=repaid, user_debt=2 * repaid,
                            user_collateral_balance=2 * seized, liquidation_bonus=10_500,
                            collateral_price=1800 * 10**8, debt_price=10**8)


def test_swap_path_is_one_leg_of_v2_hops() -> None:
    p = LiquidationParams(WETH, USDC, USER, 10**6, (WETH, DAI, USDC))
    assert contract_legs(p) == (SwapLeg((SwapHop(Venue.UNISWAP_V2, "", WETH, DAI),
                                         SwapHop(Venue.UNISWAP_V2, "", DAI, USDC))),)
    (order,) = abi_decode([ORDER], encode_liquidate(p)[4:])
    assert order[4] == ((0, ((0, DAI, 0), (0, USDC, 0))),)
    assert order[6:] == (1, "0x" + "00" * 20, 0, 0)


def test_legs_flash_pool_and_max_block_are_encoded() -> None:
    legs = (SwapLeg((v2(P_WU, WETH, USDC),), 10**18), SwapLeg((v3(V3_WU, WETH, USDC),)))
    lender = V3FlashPool(V3_DU, DAI, 100)
    p = LiquidationParams(WETH, USDC, USER, 10**6, (), 5, True, legs, lender, 123)
    assert p.flash_source == FlashSource.UNISWAP_V3_POOL
    (order,) = abi_decode([ORDER], encode_liquidate(p)[4:])
    assert order == (WETH, USDC, USER, 10**6, ((10**18, ((0, USDC, 0),)), (0, ((1, USDC, 500),))),
                     5, 2, DAI, 100, 123)


@pytest.mark.parametrize("bad", [
    dict(swap_path=(WETH, USDC), swap_legs=(SwapLeg((v2(P_WU, WETH, USDC),)),)),
    dict(swap_legs=(SwapLeg(()),)),
    dict(swap_legs=(SwapLeg((v2(P_WD, WETH, DAI),)),)),  # ends at DAI
    dict(swap_legs=(SwapLeg((v2(P_DU, DAI, USDC),)),)),  # starts elsewhere
    dict(swap_legs=(SwapLeg((v3(V3_WU, WETH, USDC, 0),)),)),  # V3 needs a fee tier
    dict(swap_legs=(SwapLeg((SwapHop(Venue.UNISWAP_V2, P_WU, WETH, USDC, 3000),)),)),
    dict(swap_legs=(SwapLeg((v2(P_WU, WETH, USDC),)), SwapLeg((v3(V3_WU, WETH, USDC),)))),
    dict(swap_legs=(SwapLeg((v2(P_WU, WETH, USDC),), 1), SwapLeg((v2(P_WU, WETH, USDC),)))),
    dict(swap_legs=(SwapLeg((v3(V3_DU, WETH, USDC, 100),)),), flash_pool=V3FlashPool(V3_DU, WETH, 100)),
    dict(flash_pool=V3FlashPool(V3_DU, USDC, 100), swap_path=(WETH, USDC)),
    dict(flash_pool=V3FlashPool(V3_DU, DAI, 100), swap_path=(WETH, USDC), flash_loan=False),
    dict(flash_pool=V3FlashPool(V3_DU, DAI, 0), swap_path=(WETH, USDC)),
    dict(swap_path=(WETH, USDC), max_block=-1),
], ids=["path-and-legs", "empty-leg", "wrong-end", "wrong-start", "v3-no-fee", "v2-fee",
        "first-leg-sells-nothing", "pool-twice", "lender-swapped", "lender-same-token",
        "lender-without-flash", "lender-no-fee", "max-block"])
def test_invalid_orders_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(LiquidatorParamsError):
        LiquidationParams(WETH, USDC, USER, 10**6, **bad)  # type: ignore[arg-type]


def test_same_asset_takes_no_legs() -> None:
    with pytest.raises(LiquidatorParamsError):
        LiquidationParams(USDC, USDC, USER, 1, swap_legs=(SwapLeg((v2(P_DU, USDC, DAI),)),))


def test_predict_a_v2_v3_split_with_an_injected_v3_quote() -> None:
    seized = 4 * 10**18
    legs = (SwapLeg((v2(P_WD, WETH, DAI), v2(P_DU, DAI, USDC)), 10**18),
            SwapLeg((v3(V3_WU, WETH, USDC),)))
    lender = V3FlashPool(V3_DU, DAI, 100)
    p = LiquidationParams(WETH, USDC, USER, 7_000 * 10**6, (), 0, True, legs, lender)
    asked: list[tuple[SwapHop, int]] = []

    def v3_quote(hop: SwapHop, amount_in: int) -> int:
        asked.append((hop, amount_in))
        return amount_in * 1790 // 10**12

    out = predict_outcome(p, quote(seized), RESERVES, flash_premium_total=5,
                          quote_leg=leg_quoter(RESERVES, v3_quote))
    dai = get_amount_out(10**18, *RESERVES[(WETH, DAI)])
    first = get_amount_out(dai, *get_reserves(RESERVES, DAI, USDC))
    second = 3 * 10**18 * 1790 // 10**12
    assert asked == [(legs[1].hops[0], 3 * 10**18)]  # the last leg sells the rest
    assert out.leg_amounts == ((10**18, dai, first), (3 * 10**18, second))
    assert out.swap_amounts == (seized, first + second)
    assert out.flash_premium == 700_000  # 0.01% of 7,000 USDC
    assert out.profit == first + second - 7_000 * 10**6 - 700_000


def test_v3_hop_needs_a_quoter() -> None:
    p = LiquidationParams(WETH, USDC, USER, 10**6, swap_legs=(SwapLeg((v3(V3_WU, WETH, USDC),)),))
    with pytest.raises(LiquidatorParamsError):
        predict_outcome(p, quote(), RESERVES, flash_premium_total=5)


def test_split_larger_than_the_seizure_is_predicted_to_revert() -> None:
    legs = (SwapLeg((v2(P_WU, WETH, USDC),), 4 * 10**18), SwapLeg((v3(V3_WU, WETH, USDC),)))
    p = LiquidationParams(WETH, USDC, USER, 10**6, swap_legs=legs)
    out = predict_outcome(p, quote(4 * 10**18), RESERVES, flash_premium_total=5)
    assert out.profit < 0 and not out.pays(0)


def test_v3_flash_fee_rounds_up() -> None:
    assert V3FlashPool(V3_DU, DAI, 100).premium(1) == 1
    assert V3FlashPool(V3_DU, DAI, 500).premium(2_000_000) == 1_000
    assert V3FlashPool(V3_DU, DAI, 500).premium(2_000_001) == 1_001
