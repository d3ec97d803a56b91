// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

interface IV3Pool {
    function token0() external view returns (address);
    function token1() external view returns (address);
    function mint(address recipient, int24 tickLower, int24 tickUpper, uint128 amount, bytes calldata data)
        external
        returns (uint256 amount0, uint256 amount1);
    function swap(address recipient, bool zeroForOne, int256 amountSpecified, uint160 sqrtPriceLimitX96, bytes calldata data)
        external
        returns (int256 amount0, int256 amount1);
    function flash(address recipient, uint256 amount0, uint256 amount1, bytes calldata data) external;
}

interface IERC20Min {
    function transfer(address to, uint256 amount) external returns (bool);
}

/// Adds liquidity to a V3 pool from its own balance (tests mint it tokens first).
contract V3Minter {
    address private _pool;

    function mint(address pool, int24 tickLower, int24 tickUpper, uint128 liquidity) external {
        _pool = pool;
        IV3Pool(pool).mint(address(this), tickLower, tickUpper, liquidity, "");
        _pool = address(0);
    }

    /// Sell `amountIn` into `pool` (moves its price), paid from this contract's balance.
    function swap(address pool, bool zeroForOne, uint256 amountIn) external {
        _pool = pool;
        IV3Pool(pool).swap(address(this), zeroForOne, int256(amountIn),
            zeroForOne ? 4295128740 : 1461446703485210103287273052203988822378723970341, "");
        _pool = address(0);
    }

    function uniswapV3MintCallback(uint256 owed0, uint256 owed1, bytes calldata) external {
        _pay(owed0, owed1);
    }

    function uniswapV3SwapCallback(int256 delta0, int256 delta1, bytes calldata) external {
        _pay(delta0 > 0 ? uint256(delta0) : 0, delta1 > 0 ? uint256(delta1) : 0);
    }

    function _pay(uint256 owed0, uint256 owed1) private {
        require(msg.sender == _pool, "not the pool");
        if (owed0 != 0) IERC20Min(IV3Pool(msg.sender).token0()).transfer(msg.sender, owed0);
        if (owed1 != 0) IERC20Min(IV3Pool(msg.sender).token1()).transfer(msg.sender, owed1);
    }
}

/// The pool's own answer for an exact-input swap: swap, and revert in the callback with the
/// deltas (call it with eth_call).
contract V3QuoteProbe {
    uint160 private constant MIN_SQRT_RATIO_PLUS_ONE = 4295128740;
    uint160 private constant MAX_SQRT_RATIO_MINUS_ONE = 1461446703485210103287273052203988822378723970341;

    function quote(address pool, bool zeroForOne, uint256 amountIn) external returns (uint256) {
        try IV3Pool(pool).swap(
            address(this), zeroForOne, int256(amountIn),
            zeroForOne ? MIN_SQRT_RATIO_PLUS_ONE : MAX_SQRT_RATIO_MINUS_ONE, ""
        ) {
            revert("swap did not revert");
        } catch (bytes memory reason) {
            require(reason.length == 64, "unexpected revert");
            (int256 amount0, int256 amount1) = abi.decode(reason, (int256, int256));
            return uint256(-(zeroForOne ? amount1 : amount0));
        }
    }

    function uniswapV3SwapCallback(int256 amount0, int256 amount1, bytes calldata) external pure {
        assembly {
            let p := mload(0x40)
            mstore(p, amount0)
            mstore(add(p, 32), amount1)
            revert(p, 64)
        }
    }
}

interface IV3Callbacks {
    function uniswapV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata data) external;
    function uniswapV3FlashCallback(uint256 fee0, uint256 fee1, bytes calldata data) external;
}

/// An attacker posing as a pool: calls the liquidator's V3 callbacks asking to be paid.
contract CallbackAttacker {
    function swapCallback(IV3Callbacks target, int256 amount0, int256 amount1, bytes calldata data) external {
        target.uniswapV3SwapCallback(amount0, amount1, data);
    }

    function flashCallback(IV3Callbacks target, uint256 fee0, uint256 fee1, bytes calldata data) external {
        target.uniswapV3FlashCallback(fee0, fee1, data);
    }

    /// Swap on a (real) pool of any factory; the pool calls back this contract, which forwards
    /// the call to the liquidator (whose check sees this contract, not a pool).
    function swapVia(address pool, IV3Callbacks target, bool zeroForOne, int256 amount, bytes calldata data) external {
        _target = target;
        _data = data;
        IV3Pool(pool).swap(address(this), zeroForOne, amount,
            zeroForOne ? 4295128740 : 1461446703485210103287273052203988822378723970341, data);
    }

    IV3Callbacks private _target;
    bytes private _data;

    function uniswapV3SwapCallback(int256 amount0, int256 amount1, bytes calldata) external {
        _target.uniswapV3SwapCallback(amount0, amount1, _data);
    }
}
