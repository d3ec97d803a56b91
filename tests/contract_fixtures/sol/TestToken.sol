// SPDX-License-Identifier: MIT
pragma solidity 0.8.24;

/// An ERC-20 for tests with the quirks real tokens have: a fee on every transfer (burned), and
/// optionally no return value from transfer/transferFrom/approve (as USDT).
contract TestToken {
    string public name;
    string public symbol;
    uint8 public immutable decimals;
    uint256 public immutable feeBps;
    bool public immutable returnsBool;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    constructor(string memory symbol_, uint8 decimals_, uint256 feeBps_, bool returnsBool_) {
        name = symbol_;
        symbol = symbol_;
        decimals = decimals_;
        feeBps = feeBps_;
        returnsBool = returnsBool_;
    }

    function mint(address to, uint256 amount) external {
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return _ok();
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        _move(msg.sender, to, amount);
        return _ok();
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        allowance[from][msg.sender] -= amount;
        _move(from, to, amount);
        return _ok();
    }

    function _move(address from, address to, uint256 amount) private {
        balanceOf[from] -= amount;
        uint256 fee = amount * feeBps / 10_000;
        totalSupply -= fee;
        balanceOf[to] += amount - fee;
        emit Transfer(from, to, amount - fee);
    }

    function _ok() private view returns (bool) {
        if (!returnsBool) {
            assembly {
                return(0, 0)
            }
        }
        return true;
    }
}
