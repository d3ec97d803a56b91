"""Private submission through a Flashbots-style relay (``executor.private_relay_url``).

A transaction sent to the public mempool can be seen and front-run; a bundle sent to a relay
goes straight to block builders. The relay API is JSON-RPC ``eth_sendBundle`` with
``{"txs": [raw...], "blockNumber": hex}``, authenticated by the header
``X-Flashbots-Signature: <address>:<EIP-191 signature of the text "0x" + hex(keccak(body))>``.
A bundle is valid for its one target block only, so ``RelaySubmitter`` targets the next
``blocks_ahead`` blocks and, while the transaction is not included, adds the next block on
every new head (the ``Sender`` re-simulates before each resubmission and watches for the
receipt, so inclusion tracking is the same as on the public path).

The signing identity only builds relay reputation; it never pays. The keeper's own signer is
used by default; pass another ``Signer`` to keep the two apart.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import aiohttp
from eth_utils import keccak

from keeper.chain.rpc import public_url, response_error
from keeper.errors import RpcError, RpcTimeout
from keeper.exec.keys import SignedTx, Signer
from keeper.obs.logging import get_logger

log = get_logger(__name__)

SIGNATURE_HEADER = "X-Flashbots-Signature"


def signature_text(body: bytes) -> str:
    """The text a relay expects signed: the 0x-hex keccak-256 of the exact request body."""
    return "0x" + keccak(body).hex()


def flashbots_signature(body: bytes, signer: Signer) -> str:
    """The ``X-Flashbots-Signature`` header value for ``body``."""
    return f"{signer.address}:{signer.sign_text(signature_text(body))}"


class RelayClient:
    """JSON-RPC to one relay. ``send_bundle`` is a write: never retried here."""

    def __init__(self, url: str, auth: Signer, *, timeout: float = 5.0) -> None:
        self.url = url
        self.label = public_url(url)
        self.auth = auth
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"RelayClient({self.label}, auth={self.auth.address})"

    async def __aenter__(self) -> RelayClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        """One signed JSON-RPC request to the relay; returns ``result``."""
        body = json.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                           "params": list(params)}, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json",
                   SIGNATURE_HEADER: flashbots_signature(body, self.auth)}
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(self.timeout):
                async with self._session.post(self.url, data=body, headers=headers) as resp:
                    if resp.status != 200:
                        text = (await resp.text())[:200]
                        raise RpcError(f"{method}: HTTP {resp.status} from relay {self.label}: {text}")
                    answer = await resp.json(content_type=None)
        except TimeoutError as exc:
            raise RpcTimeout(f"{method}: no answer from relay {self.label} within "
                             f"{self.timeout:g}s") from exc
        except aiohttp.ClientError as exc:
            raise RpcError(f"{method}: {type(exc).__name__} talking to relay {self.label}") from exc
        except ValueError as exc:
            raise RpcError(f"{method}: invalid JSON from relay {self.label}") from exc
        if not isinstance(answer, dict):
            raise RpcError(f"{method}: malformed answer from relay {self.label}")
        if answer.get("error") is not None:
            raise response_error(method, answer["error"])
        return answer.get("result")

    async def send_bundle(self, raw_txs: Sequence[bytes], block_number: int) -> Any:
        """``eth_sendBundle`` for one target block; returns the relay's result (bundle hash)."""
        bundle = {"txs": ["0x" + raw.hex() for raw in raw_txs], "blockNumber": hex(block_number)}
        return await self.call("eth_sendBundle", [bundle])


class RelaySubmitter:
    """A ``Submitter`` for ``Sender``: one-transaction bundles for the next N blocks."""

    route = "relay"
    resubmits = True

    def __init__(self, client: RelayClient, blocks_ahead: int = 1) -> None:
        if blocks_ahead < 1:
            raise ValueError("blocks_ahead must be ≥ 1")
        self.client = client
        self.blocks_ahead = blocks_ahead
        self._targeted: dict[str, int] = {}  # tx hash → highest block already targeted

    async def _target(self, signed: SignedTx, head: int) -> None:
        last = self._targeted.get(signed.tx_hash, head)
        for block in range(max(last, head) + 1, head + self.blocks_ahead + 1):
            await self.client.send_bundle([signed.raw], block)
            self._targeted[signed.tx_hash] = block
            log.info("bundle_sent", tx_hash=signed.tx_hash, target_block=block,
                     relay=self.client.label)

    async def submit(self, signed: SignedTx, head: int) -> None:
        """First submission of ``signed`` (or of a replacement): blocks head+1..head+N."""
        # Forget transactions whose targets are long past, so the map stays small.
        self._targeted = {h: b for h, b in self._targeted.items() if b > head - 64}
        self._targeted.pop(signed.tx_hash, None)
        await self._target(signed, head)

    async def on_block(self, signed: SignedTx, head: int) -> None:
        """Not included by ``head``: extend the targets to head+N."""
        await self._target(signed, head)
