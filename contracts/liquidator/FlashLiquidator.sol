// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

// Only the calls we make. Aave's own interfaces (node_modules/@aave/core-v3) would do, but their
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

/// @title FlashLiquidator
/// @notice Liquidates Aave V3 positions for its owner without capital, and never at a loss.
///
/// `liquidate` repays `debtToCover` of `user`'s debt (borrowed from the Pool in a flash loan,
/// or taken from this contract's own balance), receives the collateral, sells ALL of the
/// collateral it received along `swapPath` on Uniswap V2 pairs, repays the flash loan with its
/// premium, and pays the owner the profit in the debt asset.
///
/// Profit is measured, not computed: it is the increase of this contract's balance of the debt
/// asset over the whole call. If that increase is below `minProfit` (or negative: the trade would
/// eat into funds the contract already held) the transaction reverts, so an off-chain estimate
/// that turns out wrong costs gas, never money. Balances the contract held before the call are
/// left where they are: with the whole seized collateral sold, nothing of the liquidation stays
/// behind except the profit, which goes to the owner in the same transaction.
contract FlashLiquidator {
    IAavePoolAddressesProvider public immutable ADDRESSES_PROVIDER;
    IAavePool public immutable POOL;
    address public immutable UNISWAP_V2_FACTORY;
    /// keccak256 of the pair creation code: pair addresses are derived, not looked up.
    bytes32 public immutable PAIR_INIT_CODE_HASH;

    // `owner` and the lock share one storage slot: the owner check warms it for the lock.
    address public owner;
    uint96 private _lock = UNLOCKED;
    address public pendingOwner;

    uint96 private constant UNLOCKED = 1;
    uint96 private constant LOCKED = 2;

    event Liquidated(
        address indexed user,
        address indexed collateralAsset,
        address indexed debtAsset,
        uint256 debtToCover,
        uint256 profit,
        bool flashLoan
    );
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
    error NoCollateralSeized();
    error Loss(uint256 loss);
    error InsufficientProfit(uint256 profit, uint256 minProfit);
    error TokenCallFailed(address token, bytes4 selector);
    error EtherTransferFailed();

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
    /// @param uniswapV2Factory the factory whose pairs `swapPath` trades on.
    /// @param pairInitCodeHash the factory's pair init-code hash (Uniswap V2's for Uniswap).
    /// @param owner_ the keeper's account: the only caller of `liquidate`, and the payee.
    constructor(
        IAavePoolAddressesProvider provider,
        address uniswapV2Factory,
        bytes32 pairInitCodeHash,
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
        owner = owner_;
        emit OwnershipTransferred(address(0), owner_);
    }

    // ---- liquidation ----------------------------------------------------------------------

    /// @notice Liquidate `debtToCover` of `user`'s `debtAsset` debt against `collateralAsset`.
    /// @param debtToCover the debt to repay; with a flash loan it is also the amount borrowed
    ///        (premium charged on all of it), so pass the exact amount the Pool will take.
    /// @param swapPath token path from collateralAsset to debtAsset (each adjacent pair a
    ///        Uniswap V2 pool); empty when collateralAsset == debtAsset.
    /// @param minProfit revert unless the owner receives at least this much of the debt asset.
    /// @param flashLoan borrow `debtToCover` from the Pool (true) or spend this contract's own
    ///        balance of the debt asset, which must hold `debtToCover` (false; cheaper).
    /// @return profit the debt asset sent to the owner.
    function liquidate(
        address collateralAsset,
        address debtAsset,
        address user,
        uint256 debtToCover,
        address[] calldata swapPath,
        uint256 minProfit,
        bool flashLoan
    ) external onlyOwner nonReentrant returns (uint256 profit) {
        _checkPath(collateralAsset, debtAsset, swapPath);
        uint256 balanceBefore = _balanceOf(debtAsset);
        if (flashLoan) {
            POOL.flashLoanSimple(
                address(this), debtAsset, debtToCover, abi.encode(collateralAsset, user, swapPath), 0
            );
        } else {
            _liquidateAndSwap(collateralAsset, debtAsset, user, debtToCover, swapPath);
        }
        uint256 balanceAfter = _balanceOf(debtAsset);
        if (balanceAfter < balanceBefore) revert Loss(balanceBefore - balanceAfter);
        profit = balanceAfter - balanceBefore;
        if (profit < minProfit) revert InsufficientProfit(profit, minProfit);
        if (profit != 0) _transfer(debtAsset, msg.sender, profit);
        emit Liquidated(user, collateralAsset, debtAsset, debtToCover, profit, flashLoan);
    }

    /// @notice The Pool's flash-loan callback. Only a flash loan this contract started from
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
        (address collateralAsset, address user, address[] memory swapPath) =
            abi.decode(params, (address, address, address[]));
        _liquidateAndSwap(collateralAsset, asset, user, amount, swapPath);
        // The Pool pulls exactly this after we return: the allowance ends at zero.
        _approve(asset, address(POOL), amount + premium);
        return true;
    }

    function _liquidateAndSwap(
        address collateralAsset,
        address debtAsset,
        address user,
        uint256 debtToCover,
        address[] memory swapPath
    ) private {
        bool sameAsset = collateralAsset == debtAsset;
        uint256 collateralBefore = sameAsset ? 0 : _balanceOf(collateralAsset);
        _approve(debtAsset, address(POOL), debtToCover);
        POOL.liquidationCall(collateralAsset, debtAsset, user, debtToCover, false);
        // The Pool may repay less than approved (close factor, collateral cap): clear the rest.
        if (_allowance(debtAsset, address(POOL)) != 0) _approve(debtAsset, address(POOL), 0);
        if (sameAsset) return;
        uint256 seized = _balanceOf(collateralAsset) - collateralBefore;
        if (seized == 0) revert NoCollateralSeized();
        _swap(swapPath, seized);
    }

    /// Sell exactly `amountIn` of swapPath[0] along the path, pair to pair, to this contract.
    /// No minimum out here: the caller's profit check is the minimum, on measured balances.
    function _swap(address[] memory path, uint256 amountIn) private {
        address pair = _pairFor(path[0], path[1]);
        _transfer(path[0], pair, amountIn);
        uint256 last = path.length - 1;
        for (uint256 i; i < last; ++i) {
            address to = i + 1 < last ? _pairFor(path[i + 1], path[i + 2]) : address(this);
            amountIn = _swapHop(pair, path[i] < path[i + 1], amountIn, to);
            pair = to;
        }
    }

    /// One hop: `amountIn` is already in `pair`; send the exact output to `to`.
    function _swapHop(address pair, bool zeroForOne, uint256 amountIn, address to)
        private
        returns (uint256 amountOut)
    {
        (uint256 reserve0, uint256 reserve1,) = IUniswapV2PairMinimal(pair).getReserves();
        (uint256 reserveIn, uint256 reserveOut) =
            zeroForOne ? (reserve0, reserve1) : (reserve1, reserve0);
        // UniswapV2Library.getAmountOut, 0.3% fee: the most the pair's K check lets us take.
        uint256 inWithFee = amountIn * 997;
        amountOut = (inWithFee * reserveOut) / (reserveIn * 1000 + inWithFee);
        if (zeroForOne) {
            IUniswapV2PairMinimal(pair).swap(0, amountOut, to, "");
        } else {
            IUniswapV2PairMinimal(pair).swap(amountOut, 0, to, "");
        }
    }

    function _checkPath(address collateralAsset, address debtAsset, address[] calldata path)
        private
        pure
    {
        if (collateralAsset == debtAsset) {
            if (path.length != 0) revert BadSwapPath();
            return;
        }
        if (path.length < 2 || path[0] != collateralAsset || path[path.length - 1] != debtAsset) {
            revert BadSwapPath();
        }
        for (uint256 i = 1; i < path.length; ++i) {
            if (path[i] == path[i - 1]) revert BadSwapPath();
        }
    }

    function _pairFor(address a, address b) private view returns (address) {
        (address token0, address token1) = a < b ? (a, b) : (b, a);
        bytes32 salt = keccak256(abi.encodePacked(token0, token1));
        return address(uint160(uint256(keccak256(
            abi.encodePacked(hex"ff", UNISWAP_V2_FACTORY, salt, PAIR_INIT_CODE_HASH)
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
