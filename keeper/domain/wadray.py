"""Fixed-point arithmetic exactly as Aave V3's WadRayMath and PercentageMath libraries do it.

Every function rounds half up and reverts (here: raises ``ArithmeticRevert``) on the same inputs
as the Solidity assembly. The overflow guards are copied in their *Solidity form*, e.g.
``a > (UINT256_MAX - HALF_RAY) // b``, not as "the product does not fit": the two differ at the
edge and we want to fail exactly where the contract fails.
"""

from __future__ import annotations

from keeper.errors import KeeperError

UINT256_MAX = (1 << 256) - 1

WAD = 10**18
HALF_WAD = WAD // 2
RAY = 10**27
HALF_RAY = RAY // 2
WAD_RAY_RATIO = 10**9

PERCENTAGE_FACTOR = 10**4
HALF_PERCENTAGE_FACTOR = PERCENTAGE_FACTOR // 2


class ArithmeticRevert(KeeperError, ValueError):
    """The contract would revert on this arithmetic (overflow, underflow or division by zero)."""


def check_uint256(value: int, what: str = "value") -> int:
    """Return ``value`` if it fits a uint256, else raise as checked Solidity arithmetic would."""
    if value < 0 or value > UINT256_MAX:
        raise ArithmeticRevert(f"{what} out of uint256 range: {value}")
    return value


def _require_uint(*values: int) -> None:
    for v in values:
        if v < 0 or v > UINT256_MAX:
            raise ArithmeticRevert(f"operand out of uint256 range: {v}")


def wad_mul(a: int, b: int) -> int:
    """``a * b / WAD`` rounded half up (WadRayMath.wadMul)."""
    _require_uint(a, b)
    if b != 0 and a > (UINT256_MAX - HALF_WAD) // b:
        raise ArithmeticRevert("wadMul overflow")
    return (a * b + HALF_WAD) // WAD


def wad_div(a: int, b: int) -> int:
    """``a * WAD / b`` rounded half up (WadRayMath.wadDiv); reverts on ``b == 0``."""
    _require_uint(a, b)
    if b == 0 or a > (UINT256_MAX - b // 2) // WAD:
        raise ArithmeticRevert("wadDiv overflow or division by zero")
    return (a * WAD + b // 2) // b


def ray_mul(a: int, b: int) -> int:
    """``a * b / RAY`` rounded half up (WadRayMath.rayMul)."""
    _require_uint(a, b)
    if b != 0 and a > (UINT256_MAX - HALF_RAY) // b:
        raise ArithmeticRevert("rayMul overflow")
    return (a * b + HALF_RAY) // RAY


def ray_div(a: int, b: int) -> int:
    """``a * RAY / b`` rounded half up (WadRayMath.rayDiv); reverts on ``b == 0``."""
    _require_uint(a, b)
    if b == 0 or a > (UINT256_MAX - b // 2) // RAY:
        raise ArithmeticRevert("rayDiv overflow or division by zero")
    return (a * RAY + b // 2) // b


def ray_to_wad(a: int) -> int:
    """Ray to wad, rounded half up (WadRayMath.rayToWad)."""
    _require_uint(a)
    quotient, remainder = divmod(a, WAD_RAY_RATIO)
    # The contract rounds up when remainder >= ratio / 2, i.e. half up.
    return quotient + (1 if remainder >= WAD_RAY_RATIO // 2 else 0)


def wad_to_ray(a: int) -> int:
    """Wad to ray (WadRayMath.wadToRay); reverts if the product overflows."""
    _require_uint(a)
    return check_uint256(a * WAD_RAY_RATIO, "wadToRay")


def percent_mul(value: int, percentage: int) -> int:
    """``value * percentage / 1e4`` rounded half up (PercentageMath.percentMul).

    ``percentage`` is in basis points (10000 = 100.00%).
    """
    _require_uint(value, percentage)
    if percentage != 0 and value > (UINT256_MAX - HALF_PERCENTAGE_FACTOR) // percentage:
        raise ArithmeticRevert("percentMul overflow")
    return (value * percentage + HALF_PERCENTAGE_FACTOR) // PERCENTAGE_FACTOR


def percent_div(value: int, percentage: int) -> int:
    """``value * 1e4 / percentage`` rounded half up (PercentageMath.percentDiv)."""
    _require_uint(value, percentage)
    if percentage == 0 or value > (UINT256_MAX - percentage // 2) // PERCENTAGE_FACTOR:
        raise ArithmeticRevert("percentDiv overflow or division by zero")
    return (value * PERCENTAGE_FACTOR + percentage // 2) // percentage


def asset_unit(decimals: int) -> int:
    """``10**decimals``: one whole token in its smallest units."""
    unit: int = 10**decimals
    return unit


# ---- directed rounding (Aave 3.5+: WadRayMath.*Floor / *Ceil, MathUtils.mulDivCeil) ------------
def ray_mul_floor(a: int, b: int) -> int:
    """``a * b / RAY`` rounded down (WadRayMath.rayMulFloor)."""
    _require_uint(a, b)
    if b != 0 and a > UINT256_MAX // b:
        raise ArithmeticRevert("rayMulFloor overflow")
    return a * b // RAY


def ray_mul_ceil(a: int, b: int) -> int:
    """``a * b / RAY`` rounded up (WadRayMath.rayMulCeil)."""
    _require_uint(a, b)
    if b != 0 and a > UINT256_MAX // b:
        raise ArithmeticRevert("rayMulCeil overflow")
    return -(-(a * b) // RAY)


def ray_div_floor(a: int, b: int) -> int:
    """``a * RAY / b`` rounded down (WadRayMath.rayDivFloor); reverts on ``b == 0``."""
    _require_uint(a, b)
    if b == 0 or a > UINT256_MAX // RAY:
        raise ArithmeticRevert("rayDivFloor overflow or division by zero")
    return a * RAY // b


def ray_div_ceil(a: int, b: int) -> int:
    """``a * RAY / b`` rounded up (WadRayMath.rayDivCeil); reverts on ``b == 0``."""
    _require_uint(a, b)
    if b == 0 or a > UINT256_MAX // RAY:
        raise ArithmeticRevert("rayDivCeil overflow or division by zero")
    return -(-(a * RAY) // b)


def mul_div_ceil(a: int, b: int, c: int) -> int:
    """``a * b / c`` rounded up (MathUtils.mulDivCeil); reverts on ``c == 0`` or overflow."""
    _require_uint(a, b, c)
    if c == 0 or (b != 0 and a > UINT256_MAX // b):
        raise ArithmeticRevert("mulDivCeil overflow or division by zero")
    return -(-(a * b) // c)


def percent_mul_floor(value: int, percentage: int) -> int:
    """``value * percentage / 1e4`` rounded down (PercentageMath.percentMulFloor)."""
    _require_uint(value, percentage)
    if percentage != 0 and value > UINT256_MAX // percentage:
        raise ArithmeticRevert("percentMulFloor overflow")
    return value * percentage // PERCENTAGE_FACTOR


def percent_div_ceil(value: int, percentage: int) -> int:
    """``value * 1e4 / percentage`` rounded up (PercentageMath.percentDivCeil)."""
    _require_uint(value, percentage)
    if percentage == 0 or value > UINT256_MAX // PERCENTAGE_FACTOR:
        raise ArithmeticRevert("percentDivCeil overflow or division by zero")
    return -(-(value * PERCENTAGE_FACTOR) // percentage)
