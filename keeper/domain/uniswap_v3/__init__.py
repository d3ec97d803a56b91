"""Uniswap V3 in integers: the pool's own math, so a quote equals the pool's swap to the wei.

``full_math`` (512-bit mulDiv in Python's big ints), ``tick_math`` (tick <-> sqrt price),
``sqrt_price_math`` (the token amounts between two prices), ``swap_math`` (one swap step),
``tick_bitmap`` (where the next initialized tick is) and ``pool`` (an exact-input swap over a
snapshot of the pool, crossing initialized ticks). Every function rounds as the contracts do
(v3-core 1.0.1) and raises ``SwapRevert`` where the contract would revert.
"""
