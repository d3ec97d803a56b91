"""What the devnet's users do, as transactions to batch: mint, approve, supply, borrow, repay,
withdraw, eMode and collateral switches.

Every user is an address anvil impersonates, so a transaction is just (sender, to, data, gas);
``Devnet.send_many`` sends them.
"""

from __future__ import annotations

from dataclasses import dataclass

from keeper.contracts import artifacts
from keeper.devnet.manifest import Manifest
from keeper.errors import DevnetError

MAX_UINT = 2**256 - 1
STABLE, VARIABLE = 1, 2  # Aave interest rate modes

_ERC20 = artifacts.aave("MintableERC20").abi
_POOL = artifacts.aave("Pool").abi

# Fixed gas limits for batched sends: estimation cannot see the effects of earlier pending txs.
GAS = {"mint": 120_000, "approve": 80_000, "supply": 350_000, "borrow": 500_000,
       "repay": 350_000, "withdraw": 400_000, "setUserEMode": 200_000,
       "setUserUseReserveAsCollateral": 250_000}


@dataclass(frozen=True, slots=True)
class Tx:
    sender: str
    to: str
    data: bytes
    gas: int


def token_address(manifest: Manifest, symbol_or_token: str) -> str:
    """A reserve's token address from its symbol; an address is returned lower-cased."""
    if symbol_or_token.startswith("0x"):
        return symbol_or_token.lower()
    return manifest.reserve(symbol_or_token).address


class UserActions:
    """Builds the users' transactions against one devnet's Pool and tokens."""

    def __init__(self, manifest: Manifest) -> None:
        self.m = manifest

    def _token(self, symbol_or_token: str) -> str:
        return token_address(self.m, symbol_or_token)

    def tx_mint(self, user: str, symbol: str, amount: int) -> Tx:
        return Tx(user, self._token(symbol), _ERC20["mint(uint256)"].encode(amount), GAS["mint"])

    def tx_approve(self, user: str, symbol: str, amount: int = MAX_UINT) -> Tx:
        return Tx(user, self._token(symbol), _ERC20["approve"].encode(self.m.pool, amount),
                  GAS["approve"])

    def tx_supply(self, user: str, symbol: str, amount: int) -> Tx:
        return Tx(user, self.m.pool,
                  _POOL["supply"].encode(self._token(symbol), amount, user, 0), GAS["supply"])

    def tx_borrow(self, user: str, symbol: str, amount: int, rate_mode: int = VARIABLE) -> Tx:
        self._check_rate_mode(rate_mode)
        return Tx(user, self.m.pool,
                  _POOL["borrow"].encode(self._token(symbol), amount, rate_mode, 0, user),
                  GAS["borrow"])

    def tx_repay(self, user: str, symbol: str, amount: int, rate_mode: int = VARIABLE) -> Tx:
        self._check_rate_mode(rate_mode)
        return Tx(user, self.m.pool,
                  _POOL["repay"].encode(self._token(symbol), amount, rate_mode, user), GAS["repay"])

    def _check_rate_mode(self, rate_mode: int) -> None:
        # Stable-rate debt is gone since v3.2: fail here with a reason, not on chain.
        if rate_mode == STABLE and self.m.aave_version != "3.0":
            raise DevnetError(f"Aave {self.m.aave_version} has no stable-rate debt")

    def tx_withdraw(self, user: str, symbol: str, amount: int) -> Tx:
        return Tx(user, self.m.pool,
                  _POOL["withdraw"].encode(self._token(symbol), amount, user), GAS["withdraw"])

    def tx_set_emode(self, user: str, category: int) -> Tx:
        return Tx(user, self.m.pool, _POOL["setUserEMode"].encode(category), GAS["setUserEMode"])

    def tx_use_as_collateral(self, user: str, symbol: str, enabled: bool) -> Tx:
        return Tx(user, self.m.pool,
                  _POOL["setUserUseReserveAsCollateral"].encode(self._token(symbol), enabled),
                  GAS["setUserUseReserveAsCollateral"])

    def deposit_txs(self, user: str, symbol: str, amount: int) -> list[Tx]:
        """Mint, approve and supply: a user who arrives with the asset and deposits it."""
        return [self.tx_mint(user, symbol, amount), self.tx_approve(user, symbol),
                self.tx_supply(user, symbol, amount)]
