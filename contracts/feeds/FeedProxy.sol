// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

interface IAggregatorV2V3 {
    function decimals() external view returns (uint8);
    function description() external view returns (string memory);
    function latestAnswer() external view returns (int256);
    function latestTimestamp() external view returns (uint256);
    function latestRound() external view returns (uint256);
    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80);
}

/// @title FeedProxy
/// @notice The stable address a protocol reads a price from, forwarding to a replaceable
///         aggregator, as Chainlink's EACAggregatorProxy does. The aggregator behind it is what
///         emits `AnswerUpdated`; a keeper resolves it with `aggregator()` and must follow
///         `AggregatorConfirmed` to keep listening to the right contract.
contract FeedProxy {
    event AggregatorConfirmed(address indexed previous, address indexed latest);

    address public owner;
    address public aggregator;

    error NotOwner();

    constructor(address aggregator_) {
        owner = msg.sender;
        aggregator = aggregator_;
        emit AggregatorConfirmed(address(0), aggregator_);
    }

    function transferOwnership(address newOwner) external {
        if (msg.sender != owner) revert NotOwner();
        owner = newOwner;
    }

    /// @notice Switch to another aggregator (Chainlink does this with propose + confirm).
    function confirmAggregator(address aggregator_) external {
        if (msg.sender != owner) revert NotOwner();
        emit AggregatorConfirmed(aggregator, aggregator_);
        aggregator = aggregator_;
    }

    function decimals() external view returns (uint8) {
        return IAggregatorV2V3(aggregator).decimals();
    }

    function description() external view returns (string memory) {
        return IAggregatorV2V3(aggregator).description();
    }

    function latestAnswer() external view returns (int256) {
        return IAggregatorV2V3(aggregator).latestAnswer();
    }

    function latestTimestamp() external view returns (uint256) {
        return IAggregatorV2V3(aggregator).latestTimestamp();
    }

    function latestRound() external view returns (uint256) {
        return IAggregatorV2V3(aggregator).latestRound();
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        return IAggregatorV2V3(aggregator).latestRoundData();
    }
}
