// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

interface IPriceSource {
    function latestAnswer() external view returns (int256);
    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80);
}

/// @title RateAdapter
/// @notice Prices a yield-bearing token (wstETH-like) as `base price × exchange rate`, where the
///         exchange rate grows linearly with time and changes without any event, as the
///         rate-based adapters on mainnet do. A keeper that only listens to `AnswerUpdated`
///         misses these moves: it has to read the oracle every block.
contract RateAdapter {
    IPriceSource public immutable baseFeed;
    uint8 public constant decimals = 8;
    uint256 public immutable rateAtStart;     // 1e18 = 1.0
    uint256 public immutable ratePerSecond;   // added to the rate each second, 1e18-scaled
    uint256 public immutable startedAt;

    constructor(address baseFeed_, uint256 rateAtStart_, uint256 ratePerSecond_) {
        baseFeed = IPriceSource(baseFeed_);
        rateAtStart = rateAtStart_;
        ratePerSecond = ratePerSecond_;
        startedAt = block.timestamp;
    }

    /// @notice The exchange rate now (1e18 = 1.0).
    function exchangeRate() public view returns (uint256) {
        return rateAtStart + ratePerSecond * (block.timestamp - startedAt);
    }

    function latestAnswer() public view returns (int256) {
        int256 base = baseFeed.latestAnswer();
        if (base <= 0) return 0;
        return int256((uint256(base) * exchangeRate()) / 1e18);
    }

    function latestTimestamp() external view returns (uint256) {
        return block.timestamp;
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        // slither-disable-next-line unused-return only the round id is passed on: the answer is this adapter's own rate
        (uint80 roundId,,,,) = baseFeed.latestRoundData();
        return (roundId, latestAnswer(), block.timestamp, block.timestamp, roundId);
    }
}
