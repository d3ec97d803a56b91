// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

// Only the calls we make. Aave's and Uniswap's own interfaces (node_modules) would do, but their
// large ABIs would be in the build output of every compilation.

/// The part of Aave V3's IPool we call.
interface IAavePool {
    function flashLoanSimple(
        address receiverAddress,
        address asset,
        uint256 amount,
        bytes calldata params,
        uint16 referralCode
    ) external;

    function liquidationCall(
        address collateralAsset,
        address debtAsset,
        address user,
        uint256 debtToCover,
        bool receiveAToken
    ) external;
}

/// The part of Aave V3's IPoolAddressesProvider we call.
interface IAavePoolAddressesProvider {
    function getPool() external view returns (address);
}

/// The two calls we make on a Uniswap V2 pair.
interface IUniswapV2PairMinimal {
    function getReserves() external view returns (uint112 reserve0, uint112 reserve1, uint32 ts);
    function swap(uint256 amount0Out, uint256 amount1Out, address to, bytes calldata data) external;
}

/// The two calls we make on a Uniswap V3 pool.
interface IUniswapV3PoolMinimal {
    function swap(
        address recipient,
        bool zeroForOne,
        int256 amountSpecified,
        uint160 sqrtPriceLimitX96,
        bytes calldata data
    ) external returns (int256 amount0, int256 amount1);

    function flash(address recipient, uint256 amount0, uint256 amount1, bytes calldata data) external;
}

/// @title FlashLiquidator
/// @notice Liquidates Aave V3 positions for its owner without capital, and never at a loss.
///
/// `liquidate` repays `debtToCover` of `user`'s debt (borrowed in a flash loan from the Aave Pool
/// or from a Uniswap V3 pool, or taken from this contract's own balance), receives the
/// collateral, sells ALL of the collateral it received along the order's legs (each a path of
/// Uniswap V2 pairs and V3 pools; every leg but the last sells a fixed amount, the last sells
/// what remains), repays the flash loan with its fee, and pays the owner the profit in the debt
/// asset. An order with no legs between two assets keeps the collateral instead (for an owner
/// who holds inventory): repaid from the contract's own balance, the collateral goes to the
/// owner unsold, and `minProfit` is the least collateral it must receive. `liquidateBatch` runs
/// several such orders in one transaction, each in its own frame (one that fails is undone
/// alone), for a crash whose liquidations outnumber what one sender can hand out one by one.
///
/// Profit is measured, not computed: it is the increase of this contract's balance of the debt
/// asset over the whole call. If that increase is below `minProfit` (or negative: the trade would
/// eat into funds the contract already held) the transaction reverts, so an off-chain estimate
/// that turns out wrong costs gas, never money. Balances the contract held before the call are
/// left where they are.
///
/// Pools are never taken from the caller: V2 pair and V3 pool addresses are derived from the
/// canonical factories and init-code hashes given at construction, and the V3 callbacks pay only
/// such a pool, only while a liquidation of ours is in progress.
contract FlashLiquidator {
    enum Venue {
        UniswapV2,
        UniswapV3
    }

    /// Where the debt asset to repay comes from.
    enum FlashSource {
        OwnBalance,
        AavePool,
        UniswapV3Pool
    }

    /// Sell the previous hop's output (the leg's input on the first hop) for `tokenOut`.
    /// `fee` is the V3 fee tier of the pool (0 on V2, whose fee is fixed).
    struct Hop {
        Venue venue;
        address tokenOut;
        uint24 fee;
    }

    /// A path from the collateral to the debt asset. `amountIn` is the collateral it sells;
    /// ignored on the last leg, which sells whatever the earlier legs left.
    struct Leg {
        uint256 amountIn;
        Hop[] hops;
    }

    struct Order {
        address collateralAsset;
        address debtAsset;
        address user;
        /// The debt to repay; with a flash loan also the amount borrowed (its fee is charged on
        /// all of it), so pass the exact amount the Pool will take.
        uint256 debtToCover;
        /// Empty when collateralAsset == debtAsset, or to keep the collateral (own balance only).
        Leg[] legs;
        /// Revert unless the owner receives at least this much of the debt asset (of the
        /// collateral when it is kept).
        uint256 minProfit;
        FlashSource flashSource;
        /// For UniswapV3Pool: the pool's other token and fee tier (the pool holds the debt asset).
        address flashPairToken;
        uint24 flashFee;
        /// Revert if mined after this block; 0 = no limit.
        uint256 maxBlock;
    }

    IAavePoolAddressesProvider public immutable ADDRESSES_PROVIDER;
    IAavePool public immutable POOL;
    address public immutable UNISWAP_V2_FACTORY;
    /// keccak256 of the pair creation code: pair addresses are derived, not looked up.
    bytes32 public immutable PAIR_INIT_CODE_HASH;
    /// Zero when the chain has no Uniswap V3: every V3 hop or flash is refused.
    address public immutable UNISWAP_V3_FACTORY;
    bytes32 public immutable POOL_INIT_CODE_HASH;

    // `owner` and the lock share one storage slot: the owner check warms it for the lock.
    address public owner;
    uint96 private _lock = UNLOCKED;
    address public pendingOwner;

    uint96 private constant UNLOCKED = 1;
    uint96 private constant LOCKED = 2;
    // TickMath's bounds, one step inside: a swap limited by them sells all its input unless the
    // pool runs out of liquidity on the way.
    uint160 private constant MIN_SQRT_RATIO_PLUS_ONE = 4295128740;
    uint160 private constant MAX_SQRT_RATIO_MINUS_ONE =
        1461446703485210103287273052203988822378723970341;

    event Liquidated(
        address indexed user,
        address indexed collateralAsset,
        address indexed debtAsset,
        uint256 debtRepaid,
        uint256 collateralSeized,
        uint256 profit,
        FlashSource flashSource
    );
    /// A liquidation that keeps the collateral (no legs, own balance): it went to the owner.
    event CollateralKept(
        address indexed user,
        address indexed collateralAsset,
        address indexed debtAsset,
        uint256 debtRepaid,
        uint256 collateralSeized
    );
    /// An order of a batch that failed and was undone alone; `reason` is its revert data.
    event OrderFailed(address indexed user, bytes reason);
    event OwnershipTransferStarted(address indexed owner, address indexed pendingOwner);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event Rescued(address indexed token, address indexed to, uint256 amount);

    error NotOwner();
    error NotPendingOwner();
    error NotPool();
    error BadInitiator();
    error NotLiquidating();
    error Reentrancy();
    error ZeroAddress();
    error BadSwapPath();
    error BadFlashSource();
    error SplitExceedsSeized(uint256 seized);
    error Expired(uint256 blockNumber, uint256 maxBlock);
    error NoCollateralSeized();
    error Loss(uint256 loss);
    error InsufficientProfit(uint256 profit, uint256 minProfit);
    error TokenCallFailed(address token, bytes4 selector);
    error EtherTransferFailed();
    error NotSelf();
    error NothingLiquidated();

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    modifier nonReentrant() {
        if (_lock != UNLOCKED) revert Reentrancy();
        _lock = LOCKED;
        _;
        _lock = UNLOCKED;
    }

    /// @param provider the market's PoolAddressesProvider; the Pool is resolved from it once.
    /// @param uniswapV2Factory the factory whose pairs V2 hops trade on.
    /// @param pairInitCodeHash the V2 factory's pair init-code hash.
    /// @param uniswapV3Factory the factory whose pools V3 hops and V3 flash loans use (zero: none).
    /// @param poolInitCodeHash the V3 factory's pool init-code hash.
    /// @param owner_ the keeper's account: the only caller of `liquidate`, and the payee.
    constructor(
        IAavePoolAddressesProvider provider,
        address uniswapV2Factory,
        bytes32 pairInitCodeHash,
        address uniswapV3Factory,
        bytes32 poolInitCodeHash,
        address owner_
    ) {
        if (address(provider) == address(0) || uniswapV2Factory == address(0) || owner_ == address(0)) {
            revert ZeroAddress();
        }
        address pool = provider.getPool();
        if (pool == address(0)) revert ZeroAddress();
        ADDRESSES_PROVIDER = provider;
        POOL = IAavePool(pool);
        UNISWAP_V2_FACTORY = uniswapV2Factory;
        PAIR_INIT_CODE_HASH = pairInitCodeHash;
        UNISWAP_V3_FACTORY = uniswapV3Factory;
        POOL_INIT_CODE_HASH = poolInitCodeHash;
        owner = owner_;
        emit OwnershipTransferred(address(0), owner_);
    }

    // ---- liquidation ----------------------------------------------------------------------

    /// @notice Liquidate `order.debtToCover` of `order.user`'s debt against its collateral.
    /// @return profit the debt asset sent to the owner.
    function liquidate(Order calldata order) external onlyOwner nonReentrant returns (uint256 profit) {
        if (order.maxBlock != 0 && block.number > order.maxBlock) {
            revert Expired(block.number, order.maxBlock);
        }
        _checkOrder(order);
        if (order.legs.length == 0 && order.collateralAsset != order.debtAsset) {
            return _keepCollateral(order);
        }
        address debtAsset = order.debtAsset;
        uint256 balanceBefore = _balanceOf(debtAsset);
        if (order.flashSource == FlashSource.AavePool) {
            POOL.flashLoanSimple(
                address(this), debtAsset, order.debtToCover, abi.encode(order, balanceBefore), 0
            );
        } else if (order.flashSource == FlashSource.UniswapV3Pool) {
            bool debtIsToken0 = debtAsset < order.flashPairToken;
            IUniswapV3PoolMinimal(_v3PoolFor(debtAsset, order.flashPairToken, order.flashFee)).flash(
                address(this),
                debtIsToken0 ? order.debtToCover : 0,
                debtIsToken0 ? 0 : order.debtToCover,
                abi.encode(order, balanceBefore)
            );
        } else {
            _execute(order, balanceBefore, 0);
        }
        // _execute checked the floor; the flash loan's repayment leaves exactly the profit.
        uint256 balanceAfter = _balanceOf(debtAsset);
        if (balanceAfter < balanceBefore) revert Loss(balanceBefore - balanceAfter);
        profit = balanceAfter - balanceBefore;
        if (profit != 0) _transfer(debtAsset, msg.sender, profit);
    }

    /// @notice Liquidate several accounts in one transaction, each order keeping its collateral
    ///         (no legs, own balance). Each runs in its own call frame: one that fails (a rival
    ///         took the account first, it healed, it pays less than its floor) is undone alone
    ///         and reported by `OrderFailed`; the others stand. Reverts only when none succeeds,
    ///         so a batch that would liquidate nothing is refused by its simulation.
    /// @return done the orders that succeeded.
    function liquidateBatch(Order[] calldata orders) external onlyOwner nonReentrant returns (uint256 done) {
        uint256 n = orders.length;
        for (uint256 i; i < n; ++i) {
            Order calldata order = orders[i];
            // A malformed batch is the caller's bug, not a lost race: refused whole.
            if (order.legs.length != 0 || order.collateralAsset == order.debtAsset) revert BadSwapPath();
            _checkOrder(order);
        }
        for (uint256 i; i < n; ++i) {
            try this.keepOrder(orders[i]) {
                ++done;
            } catch (bytes memory reason) {
                emit OrderFailed(orders[i].user, reason);
            }
        }
        if (done == 0) revert NothingLiquidated();
    }

    /// @notice One order of `liquidateBatch`, in its own frame; only this contract, during a
    ///         batch, may call it.
    function keepOrder(Order calldata order) external {
        if (msg.sender != address(this)) revert NotSelf();
        if (_lock != LOCKED) revert NotLiquidating();
        if (order.maxBlock != 0 && block.number > order.maxBlock) {
            revert Expired(block.number, order.maxBlock);
        }
        _keepCollateral(order);
    }

    /// Repay from this contract's own balance and send the seized collateral to the owner, who
    /// keeps it: nothing is sold. `minProfit` is then the least collateral the owner must get
    /// (a rival who took part of the debt first leaves less): below it the call reverts.
    function _keepCollateral(Order calldata order) private returns (uint256) {
        (uint256 repaid, uint256 seized) = _liquidationCall(order);
        if (seized < order.minProfit) revert InsufficientProfit(seized, order.minProfit);
        _transfer(order.collateralAsset, owner, seized);
        emit CollateralKept(order.user, order.collateralAsset, order.debtAsset, repaid, seized);
        return 0;
    }

    /// @notice The Aave Pool's flash-loan callback. Only a flash loan this contract started from
    ///         `liquidate` gets past the checks: anyone else's is rejected before any transfer.
    function executeOperation(
        address asset,
        uint256 amount,
        uint256 premium,
        address initiator,
        bytes calldata params
    ) external returns (bool) {
        if (msg.sender != address(POOL)) revert NotPool();
        if (initiator != address(this)) revert BadInitiator();
        if (_lock != LOCKED) revert NotLiquidating();
        (Order memory order, uint256 balanceBefore) = abi.decode(params, (Order, uint256));
        _execute(order, balanceBefore, amount + premium);
        // The Pool pulls exactly this after we return: the allowance ends at zero.
        _approve(asset, address(POOL), amount + premium);
        return true;
    }

    /// @notice A Uniswap V3 pool's flash callback: only the pool `liquidate` borrowed from.
    function uniswapV3FlashCallback(uint256 fee0, uint256 fee1, bytes calldata data) external {
        (Order memory order, uint256 balanceBefore) = abi.decode(data, (Order, uint256));
        if (msg.sender != _v3PoolFor(order.debtAsset, order.flashPairToken, order.flashFee)) {
            revert NotPool();
        }
        if (_lock != LOCKED) revert NotLiquidating();
        uint256 owed = order.debtToCover + (order.debtAsset < order.flashPairToken ? fee0 : fee1);
        _execute(order, balanceBefore, owed);
        _transfer(order.debtAsset, msg.sender, owed);
    }

    /// @notice A Uniswap V3 pool's swap callback: pays the input of a hop `_swapV3` started.
    function uniswapV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata data)
        external
    {
        (address tokenIn, address tokenOut, uint24 fee) = abi.decode(data, (address, address, uint24));
        if (msg.sender != _v3PoolFor(tokenIn, tokenOut, fee)) revert NotPool();
        if (_lock != LOCKED) revert NotLiquidating();
        int256 owed = tokenIn < tokenOut ? amount0Delta : amount1Delta;
        if (owed > 0) _transfer(tokenIn, msg.sender, uint256(owed));
    }

    /// Liquidate, sell, and check the result against `balanceBefore + owed` (the funds held
    /// before plus what the flash loan must get back): below it is a Loss, reported here, before
    /// the lender's transfer would fail with the token's own message.
    function _execute(Order memory order, uint256 balanceBefore, uint256 owed) private {
        (uint256 repaid, uint256 seized) = _liquidationCall(order);
        if (order.collateralAsset != order.debtAsset) {
            _swapLegs(order.legs, order.collateralAsset, seized);
        }
        uint256 balance = _balanceOf(order.debtAsset);
        uint256 floor = balanceBefore + owed;
        if (balance < floor) revert Loss(floor - balance);
        uint256 profit = balance - floor;
        if (profit < order.minProfit) revert InsufficientProfit(profit, order.minProfit);
        emit Liquidated(
            order.user, order.collateralAsset, order.debtAsset, repaid, seized, profit, order.flashSource
        );
    }

    /// Pool.liquidationCall, measured: the debt repaid is what the Pool took of our allowance,
    /// the collateral seized what our balance gained (so a fee-on-transfer token counts right).
    function _liquidationCall(Order memory order) private returns (uint256 repaid, uint256 seized) {
        address collateralAsset = order.collateralAsset;
        address debtAsset = order.debtAsset;
        uint256 collateralBefore = _balanceOf(collateralAsset);
        _approve(debtAsset, address(POOL), order.debtToCover);
        POOL.liquidationCall(collateralAsset, debtAsset, order.user, order.debtToCover, false);
        // The Pool may repay less than approved (close factor, collateral cap): clear the rest.
        uint256 left = _allowance(debtAsset, address(POOL));
        if (left != 0) _approve(debtAsset, address(POOL), 0);
        repaid = order.debtToCover - left;
        if (collateralAsset == debtAsset) {
            // One balance took both legs of the liquidation: add back what was repaid.
            return (repaid, _balanceOf(collateralAsset) + repaid - collateralBefore);
        }
        seized = _balanceOf(collateralAsset) - collateralBefore;
        if (seized == 0) revert NoCollateralSeized();
    }

    function _swapLegs(Leg[] memory legs, address collateralAsset, uint256 seized) private {
        uint256 last = legs.length - 1;
        uint256 remaining = seized;
        for (uint256 i; i < last; ++i) {
            uint256 amountIn = legs[i].amountIn;
            if (amountIn >= remaining) revert SplitExceedsSeized(seized);
            remaining -= amountIn;
            _swapLeg(legs[i].hops, collateralAsset, amountIn);
        }
        _swapLeg(legs[last].hops, collateralAsset, remaining);
    }

    /// Sell `amountIn` of `tokenIn` along `hops`. A hop followed by a V2 hop pays its output
    /// straight into the next pair; every V2 hop measures its input from the pair's balance.
    /// No minimum out here: the caller's profit check is the minimum, on measured balances.
    function _swapLeg(Hop[] memory hops, address tokenIn, uint256 amountIn) private {
        // The pair the previous hop already paid this hop's input into (none before the first).
        address paidInto = address(0);
        uint256 n = hops.length;
        for (uint256 i; i < n; ++i) {
            Hop memory hop = hops[i];
            address recipient = address(this);
            if (i + 1 < n && hops[i + 1].venue == Venue.UniswapV2) {
                recipient = _pairFor(hop.tokenOut, hops[i + 1].tokenOut);
            }
            if (hop.venue == Venue.UniswapV2) {
                address pair = _pairFor(tokenIn, hop.tokenOut);
                if (paidInto != pair) _transfer(tokenIn, pair, amountIn);
                amountIn = _swapV2(pair, tokenIn < hop.tokenOut, tokenIn, recipient);
            } else {
                amountIn = _swapV3(tokenIn, hop.tokenOut, hop.fee, amountIn, recipient);
            }
            paidInto = recipient;
            tokenIn = hop.tokenOut;
        }
    }

    /// One V2 hop: the input is already in `pair`; send the most its K check allows to `to`.
    function _swapV2(address pair, bool zeroForOne, address tokenIn, address to)
        private
        returns (uint256 amountOut)
    {
        // slither-disable-next-line unused-return the pair's last-update time plays no part in pricing a hop
        (uint256 reserve0, uint256 reserve1,) = IUniswapV2PairMinimal(pair).getReserves();
        (uint256 reserveIn, uint256 reserveOut) =
            zeroForOne ? (reserve0, reserve1) : (reserve1, reserve0);
        // What arrived, not what was sent: a fee-on-transfer token delivers less.
        uint256 amountIn = _uintView(tokenIn, abi.encodeWithSelector(0x70a08231, pair)) - reserveIn;
        // UniswapV2Library.getAmountOut, 0.3% fee.
        uint256 inWithFee = amountIn * 997;
        amountOut = (inWithFee * reserveOut) / (reserveIn * 1000 + inWithFee);
        if (zeroForOne) {
            IUniswapV2PairMinimal(pair).swap(0, amountOut, to, "");
        } else {
            IUniswapV2PairMinimal(pair).swap(amountOut, 0, to, "");
        }
    }

    /// One V3 hop on the canonical pool, exact input; the pool calls uniswapV3SwapCallback.
    function _swapV3(address tokenIn, address tokenOut, uint24 fee, uint256 amountIn, address to)
        private
        returns (uint256 amountOut)
    {
        bool zeroForOne = tokenIn < tokenOut;
        (int256 amount0, int256 amount1) = IUniswapV3PoolMinimal(_v3PoolFor(tokenIn, tokenOut, fee)).swap(
            to,
            zeroForOne,
            // Token amounts are far below 2**255: the conversion cannot wrap.
            int256(amountIn),
            zeroForOne ? MIN_SQRT_RATIO_PLUS_ONE : MAX_SQRT_RATIO_MINUS_ONE,
            abi.encode(tokenIn, tokenOut, fee)
        );
        amountOut = uint256(-(zeroForOne ? amount1 : amount0));
    }

    /// The rules every order must meet before anything moves.
    function _checkOrder(Order calldata order) private view {
        FlashSource source = order.flashSource;
        if (source == FlashSource.UniswapV3Pool) {
            if (UNISWAP_V3_FACTORY == address(0) || order.flashFee == 0
                || order.flashPairToken == order.debtAsset || order.flashPairToken == address(0)) {
                revert BadFlashSource();
            }
        } else if (order.flashPairToken != address(0) || order.flashFee != 0) {
            revert BadFlashSource();
        }
        address collateralAsset = order.collateralAsset;
        if (collateralAsset == order.debtAsset) {
            if (order.legs.length != 0) revert BadSwapPath();
            return;
        }
        uint256 legs = order.legs.length;
        // No legs: the collateral is kept, so the debt must be paid from our own balance.
        if (legs == 0 && source != FlashSource.OwnBalance) revert BadSwapPath();
        for (uint256 i; i < legs; ++i) {
            Hop[] calldata hops = order.legs[i].hops;
            if (hops.length == 0) revert BadSwapPath();
            address tokenIn = collateralAsset;
            for (uint256 j; j < hops.length; ++j) {
                Hop calldata hop = hops[j];
                if (hop.tokenOut == tokenIn) revert BadSwapPath();
                if (hop.venue == Venue.UniswapV2 ? hop.fee != 0 : (hop.fee == 0 || UNISWAP_V3_FACTORY == address(0))) {
                    revert BadSwapPath();
                }
                tokenIn = hop.tokenOut;
            }
            if (tokenIn != order.debtAsset) revert BadSwapPath();
        }
    }

    function _pairFor(address a, address b) private view returns (address) {
        (address token0, address token1) = a < b ? (a, b) : (b, a);
        bytes32 salt = keccak256(abi.encodePacked(token0, token1));
        return address(uint160(uint256(keccak256(
            abi.encodePacked(hex"ff", UNISWAP_V2_FACTORY, salt, PAIR_INIT_CODE_HASH)
        ))));
    }

    /// The canonical V3 pool of (a, b, fee), as periphery's PoolAddress.computeAddress.
    function _v3PoolFor(address a, address b, uint24 fee) private view returns (address) {
        (address token0, address token1) = a < b ? (a, b) : (b, a);
        bytes32 salt = keccak256(abi.encode(token0, token1, fee));
        return address(uint160(uint256(keccak256(
            abi.encodePacked(hex"ff", UNISWAP_V3_FACTORY, salt, POOL_INIT_CODE_HASH)
        ))));
    }

    // ---- owner ------------------------------------------------------------------------------

    /// @notice Send `amount` of `token` held here to `to` (tokens sent by mistake, own funds).
    function rescue(address token, address to, uint256 amount) external onlyOwner nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        _transfer(token, to, amount);
        emit Rescued(token, to, amount);
    }

    /// @notice Send ether held here (it can only arrive by selfdestruct or as a block reward).
    function rescueEther(address payable to, uint256 amount) external onlyOwner nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert EtherTransferFailed();
        emit Rescued(address(0), to, amount);
    }

    /// @notice First step of an ownership transfer; `newOwner` must accept it.
    function transferOwnership(address newOwner) external onlyOwner {
        pendingOwner = newOwner;
        emit OwnershipTransferStarted(msg.sender, newOwner);
    }

    /// @notice Second step: the pending owner takes over.
    function acceptOwnership() external {
        if (msg.sender != pendingOwner) revert NotPendingOwner();
        emit OwnershipTransferred(owner, msg.sender);
        owner = msg.sender;
        delete pendingOwner;
    }

    // ---- token calls that tolerate tokens returning nothing (USDT-style) ------------------

    function _transfer(address token, address to, uint256 amount) private {
        _tokenCall(token, abi.encodeWithSelector(0xa9059cbb, to, amount)); // transfer
    }

    function _approve(address token, address spender, uint256 amount) private {
        _tokenCall(token, abi.encodeWithSelector(0x095ea7b3, spender, amount)); // approve
    }

    function _tokenCall(address token, bytes memory data) private {
        (bool ok, bytes memory ret) = token.call(data);
        if (!ok || (ret.length != 0 && !abi.decode(ret, (bool))) || (ret.length == 0 && token.code.length == 0)) {
            revert TokenCallFailed(token, bytes4(data));
        }
    }

    function _balanceOf(address token) private view returns (uint256) {
        return _uintView(token, abi.encodeWithSelector(0x70a08231, address(this))); // balanceOf
    }

    function _allowance(address token, address spender) private view returns (uint256) {
        return _uintView(token, abi.encodeWithSelector(0xdd62ed3e, address(this), spender)); // allowance
    }

    function _uintView(address token, bytes memory data) private view returns (uint256) {
        (bool ok, bytes memory ret) = token.staticcall(data);
        if (!ok || ret.length < 32) revert TokenCallFailed(token, bytes4(data));
        return abi.decode(ret, (uint256));
    }
}
