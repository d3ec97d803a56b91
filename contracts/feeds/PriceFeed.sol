// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

/// @title PriceFeed
/// @notice A Chainlink-compatible aggregator whose answer the owner sets. Every update starts a
///         new round and emits `NewRound` and `AnswerUpdated` exactly like Chainlink's
///         OffchainAggregator, so a keeper that follows oracle events sees the move at once.
contract PriceFeed {
    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);
    event NewRound(uint256 indexed roundId, address indexed startedBy, uint256 startedAt);

    struct Round {
        int256 answer;
        uint64 startedAt;
        uint64 updatedAt;
    }

    address public owner;
    uint8 public immutable decimals;
    string public description;
    uint256 public constant version = 4;

    uint80 internal latestRoundId;
    mapping(uint80 => Round) internal rounds;

    error NotOwner();
    error NoData();

    constructor(uint8 decimals_, string memory description_, int256 initialAnswer) {
        owner = msg.sender;
        decimals = decimals_;
        description = description_;
        _update(initialAnswer);
    }

    function transferOwnership(address newOwner) external {
        if (msg.sender != owner) revert NotOwner();
        owner = newOwner;
    }

    /// @notice Publish a new answer as a new round.
    function updateAnswer(int256 answer) external {
        if (msg.sender != owner) revert NotOwner();
        _update(answer);
    }

    function _update(int256 answer) internal {
        uint80 roundId = latestRoundId + 1;
        latestRoundId = roundId;
        rounds[roundId] = Round(answer, uint64(block.timestamp), uint64(block.timestamp));
        emit NewRound(roundId, msg.sender, block.timestamp);
        emit AnswerUpdated(answer, roundId, block.timestamp);
    }

    function latestAnswer() external view returns (int256) {
        return rounds[latestRoundId].answer;
    }

    function latestTimestamp() external view returns (uint256) {
        return rounds[latestRoundId].updatedAt;
    }

    function latestRound() external view returns (uint256) {
        return latestRoundId;
    }

    function getAnswer(uint256 roundId) external view returns (int256) {
        return rounds[uint80(roundId)].answer;
    }

    function getTimestamp(uint256 roundId) external view returns (uint256) {
        return rounds[uint80(roundId)].updatedAt;
    }

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        return getRoundData(latestRoundId);
    }

    function getRoundData(uint80 roundId)
        public
        view
        returns (uint80, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        Round memory r = rounds[roundId];
        // slither-disable-next-line incorrect-equality a round never written has updatedAt 0 exactly: the test is for absence, not a time
        if (r.updatedAt == 0) revert NoData();
        return (roundId, r.answer, r.startedAt, r.updatedAt, roundId);
    }
}
