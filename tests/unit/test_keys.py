"""Signer loading: keystore + password (env or file), raw key on devnets only, never shown."""

from __future__ import annotations

import copy
import json
import pickle
import time
from pathlib import Path

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.app.config import load_config
from keeper.app.exec_settings import load_signer, signer_from_config
from keeper.domain.fees import Fees
from keeper.errors import ConfigError
from keeper.exec.keys import Signer

KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ADDRESS = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
PASSWORD = "correct horse battery staple"


def key_forms() -> list[str]:
    bare = KEY[2:]
    return [bare, bare.upper(), "0x" + bare.upper(), bare[:32], bare[32:]]


def assert_no_key(text: str) -> None:
    lowered = text.lower()
    for form in key_forms():
        assert form.lower() not in lowered, "private key material leaked"


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # scrypt with a small n keeps the test fast; production keystores use the default n
    encrypted = Account.encrypt(bytes.fromhex(KEY[2:]), PASSWORD, kdf="scrypt", iterations=2**10)
    path = tmp_path_factory.mktemp("ks") / "keeper.json"
    path.write_text(json.dumps(encrypted))
    return path


def test_devnet_raw_key_and_repr_shows_only_the_address() -> None:
    cfg = load_config(None, {"KEEPER_PRIVATE_KEY": KEY})
    signer = signer_from_config(cfg)
    assert signer.address == ADDRESS
    assert repr(signer) == str(signer) == f"Signer({ADDRESS})"
    assert_no_key(f"{signer!r} {[signer]} {vars(type(signer))}")
    assert_no_key(repr(cfg) + str(cfg.secrets) + cfg.model_dump_json())
    for attempt in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            attempt(signer)


def test_raw_key_refused_off_devnet() -> None:
    cfg = load_config(None, {"KEEPER_PRIVATE_KEY": KEY, "KEEPER_NETWORK__CHAIN_ID": "1"})
    with pytest.raises(ConfigError, match="only on a devnet") as err:
        signer_from_config(cfg)
    assert_no_key(str(err.value))


def test_malformed_raw_key_error_carries_no_key_material() -> None:
    bad = KEY[:-2] + "zz"
    cfg = load_config(None, {"KEEPER_PRIVATE_KEY": bad})
    with pytest.raises(ConfigError) as err:
        signer_from_config(cfg)
    assert err.value.__context__ is None and err.value.__cause__ is None
    assert bad[2:40] not in str(err.value)


async def test_keystore_with_password_from_env_and_from_file(keystore: Path,
                                                              tmp_path: Path) -> None:
    env = {"KEEPER_ACCOUNT__KEYSTORE": str(keystore), "KEEPER_KEYSTORE_PASSWORD": PASSWORD,
           "KEEPER_NETWORK__CHAIN_ID": "1"}
    signer = await load_signer(load_config(None, env))
    assert signer.address == ADDRESS
    pw_file = tmp_path / "pw"
    pw_file.write_text(PASSWORD + "\n")
    env = {"KEEPER_ACCOUNT__KEYSTORE": str(keystore), "KEEPER_KEYSTORE_PASSWORD_FILE": str(pw_file)}
    assert (await load_signer(load_config(None, env))).address == ADDRESS


async def test_bad_keystore_password_error_is_clean(keystore: Path) -> None:
    env = {"KEEPER_ACCOUNT__KEYSTORE": str(keystore), "KEEPER_KEYSTORE_PASSWORD": "wrong"}
    with pytest.raises(ConfigError, match="wrong password") as err:
        await load_signer(load_config(None, env))
    assert err.value.__context__ is None
    assert_no_key(str(err.value))
    assert "wrong" not in str(err.value).replace("wrong password", "")


def test_missing_pieces_are_config_errors(tmp_path: Path, keystore: Path) -> None:
    with pytest.raises(ConfigError, match="no signing key"):
        signer_from_config(load_config(None, {}))
    with pytest.raises(ConfigError, match="no password"):
        signer_from_config(load_config(None, {"KEEPER_ACCOUNT__KEYSTORE": str(keystore)}))
    missing = {"KEEPER_ACCOUNT__KEYSTORE": str(tmp_path / "nope.json"),
               "KEEPER_KEYSTORE_PASSWORD": PASSWORD}
    with pytest.raises(ConfigError, match="not found"):
        signer_from_config(load_config(None, missing))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        signer_from_config(load_config(None, {"KEEPER_ACCOUNT__KEYSTORE": str(garbage),
                                              "KEEPER_KEYSTORE_PASSWORD": PASSWORD}))


def test_keystore_takes_precedence_over_raw_key(keystore: Path) -> None:
    other = "0x" + "11" * 32
    env = {"KEEPER_ACCOUNT__KEYSTORE": str(keystore), "KEEPER_KEYSTORE_PASSWORD": PASSWORD,
           "KEEPER_PRIVATE_KEY": other}
    assert signer_from_config(load_config(None, env)).address == ADDRESS


def test_signing_uses_coincurve_and_is_fast() -> None:
    signer = signer_from_config(load_config(None, {"KEEPER_PRIVATE_KEY": KEY}))
    assert signer.fast_path, "coincurve is a dependency: eth-keys must use it"
    tx = {"type": 2, "chainId": 31337, "nonce": 0, "to": bytes(20), "value": 1, "data": b"",
          "gas": 21_000, "maxFeePerGas": 2 * 10**9, "maxPriorityFeePerGas": 10**9}
    signed = signer.sign_transaction(tx)
    assert signed.raw[0] == 2 and len(signed.tx_hash) == 66
    assert Account.recover_transaction(signed.raw) == Account.from_key(KEY).address
    n = 300
    start = time.perf_counter()
    for i in range(n):
        signer.sign_transaction(tx | {"nonce": i})
    rate = n / (time.perf_counter() - start)
    # The rate is a figure, not a bar (speed is `make bench`'s); the fast path is asserted above.
    print(f"EIP-1559 signs/s with coincurve: {rate:.0f}")


@settings(max_examples=60, deadline=None, derandomize=True)
@given(nonce=st.integers(0, 2**64 - 1), value=st.integers(0, 2**96), gas=st.integers(21_000, 30_000_000),
       tip=st.integers(0, 10**12), extra=st.integers(0, 10**13), data=st.binary(max_size=600),
       to=st.binary(min_size=20, max_size=20), chain_id=st.sampled_from([1, 10, 8453, 31337]))
def test_the_hot_path_signs_type_2_exactly_as_eth_account(
        nonce: int, value: int, gas: int, tip: int, extra: int, data: bytes, to: bytes,
        chain_id: int) -> None:
    cap = tip + extra
    # Encoded and signed here (RLP and libsecp256k1 directly): the same bytes and hash as
    # eth-account's typed transaction, which the node then recovers to our address.
    signer = signer_from_config(load_config(None, {"KEEPER_PRIVATE_KEY": KEY}))
    ours = signer.sign_eip1559(chain_id, nonce, "0x" + to.hex(), data, value, gas, Fees(cap, tip))
    theirs = signer.sign_transaction({
        "type": 2, "chainId": chain_id, "nonce": nonce, "to": to, "value": value, "data": data,
        "gas": gas, "maxFeePerGas": cap, "maxPriorityFeePerGas": tip})
    assert ours == theirs
    assert Account.recover_transaction(ours.raw) == Account.from_key(KEY).address


def test_sign_text_is_eip191() -> None:
    from eth_account.messages import encode_defunct

    signer = Signer.from_private_key(load_config(None, {"KEEPER_PRIVATE_KEY": KEY})
                                     .secrets.private_key or pytest.fail("no key"), 31337)
    sig = signer.sign_text("0xabc")
    assert Account.recover_message(encode_defunct(text="0xabc"), signature=sig).lower() == ADDRESS


def test_key_source_names_its_pieces_without_a_config(keystore: Path) -> None:
    from pydantic import SecretStr

    from keeper.exec.keys import KeySource, open_signer

    raw = KeySource(chain_id=5, private_key=SecretStr(KEY), devnet_chain_ids=frozenset({5}))
    assert open_signer(raw).address == ADDRESS
    with pytest.raises(ConfigError, match=r"only on a devnet \(chain id 5\)"):
        open_signer(KeySource(chain_id=1, private_key=SecretStr(KEY),
                              devnet_chain_ids=frozenset({5})))
    both = KeySource(chain_id=1, keystore=keystore, keystore_password=SecretStr(PASSWORD),
                     private_key=SecretStr("0x" + "11" * 32))
    assert open_signer(both).address == ADDRESS
    assert_no_key(repr(raw) + repr(both))
