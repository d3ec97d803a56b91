"""What every command that talks to a node checks first, so a new user's mistake is one line.

* the node's ``eth_chainId`` is the configured ``network.chain_id`` (a key signs for one chain);
* a configured contract (the liquidator, the addresses provider) has code on that chain;
* how many confirmations the chain can give: one that mines on demand (anvil or hardhat
  automine) mines no block on top of ours unless something else is sent, so waiting for a
  second block would wait out the receipt timeout;
* where a young chain can be read: the book's backfill reads the market ``follow_depth``
  blocks below the tip, where Multicall3 or the market may not exist yet.
"""

from __future__ import annotations

from typing import Any

from keeper.chain.rpc import JsonRpc
from keeper.errors import ConfigError, RpcError, RpcResponseError
from keeper.obs.logging import get_logger

log = get_logger(__name__)

_CONFIRMATIONS_ON_DEMAND = 1  # the receipt's own block: nothing comes on top of it
_CONFIRMATIONS_DEFAULT = 2  # one block on top: a reorg of depth 1 is seen before "mined"


async def check_chain_id(rpc: JsonRpc, expected: int) -> None:
    """Raise ConfigError unless the node is on chain ``expected``."""
    raw = await rpc.call("eth_chainId")
    try:
        chain_id = int(str(raw), 16)
    except ValueError:
        raise RpcError(f"eth_chainId: not a hex number: {str(raw)[:40]!r}") from None
    if chain_id != expected:
        raise ConfigError(f"network.chain_id: the node is on chain {chain_id}, "
                          f"the config says {expected}")


async def has_code(rpc: JsonRpc, address: str, block: Any = "latest") -> bool:
    """Whether a contract is deployed at ``address`` (at ``block``)."""
    code = await rpc.call("eth_getCode", [address, block])
    return isinstance(code, str) and code not in ("0x", "0x0", "")


async def require_code(rpc: JsonRpc, address: str, field: str, chain_id: int,
                       hint: str = "") -> None:
    """Raise ConfigError naming ``field`` when ``address`` has no code on the chain."""
    if not await has_code(rpc, address):
        raise ConfigError(f"{field}: no contract at {address} on chain {chain_id}"
                          + (f" ({hint})" if hint else ""))


async def mines_on_demand(rpc: JsonRpc) -> bool:
    """Whether the node mines a block per transaction (anvil/hardhat automine)."""
    for method in ("anvil_getAutomine", "hardhat_getAutomine"):
        try:
            return bool(await rpc.call(method))
        except RpcResponseError:
            continue  # not this kind of node (a real chain answers "method not found")
    return False


async def confirmations(rpc: JsonRpc, configured: int | None) -> int:
    """The confirmations to wait for: the configured value, or the chain's default; a value a
    chain that mines on demand cannot reach is lowered, with a warning."""
    on_demand = await mines_on_demand(rpc)
    if configured is None:
        return _CONFIRMATIONS_ON_DEMAND if on_demand else _CONFIRMATIONS_DEFAULT
    if on_demand and configured > _CONFIRMATIONS_ON_DEMAND:
        log.warning("confirmations_lowered_chain_mines_on_demand", configured=configured,
                    used=_CONFIRMATIONS_ON_DEMAND,
                    reason="no block comes on top of ours unless something else is sent")
        return _CONFIRMATIONS_ON_DEMAND
    return configured


async def follow_depth(rpc: JsonRpc, start_block: int, contracts: list[str],
                       default: int) -> int:
    """How far below the tip the backfill may read the market: ``default``, or 0 (the tip)
    when one of ``contracts`` (Multicall3, the Pool) has no code at that block yet: a chain
    younger than ``default`` blocks, or a node without the state of its older blocks."""
    tip = int(str(await rpc.call("eth_blockNumber")), 16)
    at = max(start_block, tip - default)
    if at >= tip:
        return default
    for address in contracts:
        try:
            present = await has_code(rpc, address, hex(at))
        except RpcResponseError:  # "state not available": a node without that block's state
            present = False
        if not present:
            log.info("market_read_at_tip", block=at, tip=tip, missing=address,
                     reason="no code there yet (a young chain or a node without old state)")
            return 0
    return default
