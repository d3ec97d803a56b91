"""The config, translated into the exec layer's own settings (exec never reads the config)."""

from __future__ import annotations

from typing import Any

from keeper.app.config import KeeperConfig
from keeper.exec import keys
from keeper.exec.keys import KeySource, Signer
from keeper.exec.sender import SenderSettings


def sender_settings(cfg: KeeperConfig, **overrides: Any) -> SenderSettings:
    """The ``[executor]`` section (and the network's chain id and timeout) as sender knobs."""
    ex = cfg.executor
    base: dict[str, Any] = {
        "chain_id": cfg.network.chain_id,
        "dry_run": ex.dry_run,
        "replace_after_blocks": ex.replace_after_blocks,
        "receipt_timeout": ex.receipt_timeout,
        "rpc_timeout": cfg.network.request_timeout,
        # Unset: 2 here; keeper.app.preflight.confirmations fits it to the chain.
        "confirmations": 2 if ex.confirmations is None else ex.confirmations,
        "poll_interval": ex.poll_interval,
        "gas_margin_percent": ex.gas_margin_percent,
    }
    return SenderSettings(**(base | overrides))


def key_source(cfg: KeeperConfig) -> KeySource:
    """Where the config says the signing key is (keystore + password, or a devnet raw key)."""
    return KeySource(chain_id=cfg.network.chain_id, keystore=cfg.account.keystore,
                     keystore_password=cfg.secrets.keystore_password,
                     private_key=cfg.secrets.private_key)


def signer_from_config(cfg: KeeperConfig) -> Signer:
    """The signer the config asks for (blocking; prefer ``load_signer`` inside the loop)."""
    return keys.open_signer(key_source(cfg))


async def load_signer(cfg: KeeperConfig) -> Signer:
    """The signer the config asks for, decrypted off the event loop."""
    return await keys.load_signer(key_source(cfg))
