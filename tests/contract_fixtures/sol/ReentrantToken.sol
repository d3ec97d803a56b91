// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

interface IRescuable {
    function acceptOwnership() external;
    function rescue(address token, address to, uint256 amount) external;
}

/// Becomes the liquidator's owner, then rescues itself: its transfer re-enters rescue. The inner
/// revert is caught and re-raised by `attack`, so the caller sees the liquidator's own error
/// (the liquidator would otherwise report the failed transfer).
contract ReentrantToken {
    IRescuable public target;
    bytes public innerRevert;

    function attack(IRescuable liquidator) external {
        target = liquidator;
        liquidator.acceptOwnership();
        liquidator.rescue(address(this), address(this), 1);
        bytes memory reason = innerRevert;
        if (reason.length != 0) {
            assembly {
                revert(add(reason, 32), mload(reason))
            }
        }
    }

    function transfer(address, uint256) external returns (bool) {
        try target.rescue(address(this), address(this), 1) {}
        catch (bytes memory reason) {
            innerRevert = reason;
        }
        return true;
    }
}
