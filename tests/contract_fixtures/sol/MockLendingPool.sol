// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

/// A lending pool (and its own addresses provider) whose liquidationCall takes the debt asked
/// and pays a set amount of collateral: liquidations with tokens an Aave market would not list
/// (fee-on-transfer, no return value) or that seize nothing.
contract MockLendingPool {
    uint256 public seize;

    function getPool() external view returns (address) {
        return address(this);
    }

    function setSeize(uint256 amount) external {
        seize = amount;
    }

    function liquidationCall(address collateral, address debt, address, uint256 debtToCover, bool)
        external
    {
        _call(debt, abi.encodeWithSelector(0x23b872dd, msg.sender, address(this), debtToCover));
        if (seize != 0) _call(collateral, abi.encodeWithSelector(0xa9059cbb, msg.sender, seize));
    }

    function _call(address token, bytes memory data) private {
        (bool ok, bytes memory ret) = token.call(data);
        require(ok && (ret.length == 0 || abi.decode(ret, (bool))), "token call failed");
    }
}
