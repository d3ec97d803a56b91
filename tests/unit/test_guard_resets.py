"""``keeper breaker reset`` → the daemon: the request files, and the guard stage's decoders."""

from __future__ import annotations

from pathlib import Path

from keeper.pipeline.guard_resets import request_reset, resets_dir, take_resets
from keeper.pipeline.oracle_guard import _decode_symbol, _updated_at


def test_requests_are_taken_once_in_order(tmp_path: Path) -> None:
    d = resets_dir(tmp_path / "keeper.sqlite")
    assert d == tmp_path / "keeper.sqlite.breaker-resets"
    assert take_resets(d) == []  # no directory yet: nothing pending
    request_reset(d, "WETH")
    request_reset(d, None)
    request_reset(d, "0xABCDEF0000000000000000000000000000000001")
    assert sorted(take_resets(d)) == sorted(
        ["weth", "*", "0xabcdef0000000000000000000000000000000001"])
    assert take_resets(d) == []


def test_a_half_written_request_is_not_taken(tmp_path: Path) -> None:
    d = tmp_path / "r"
    d.mkdir()
    (d / "x.tmp").write_text("weth\n")
    assert take_resets(d) == []


def test_latest_round_data_updated_at() -> None:
    words = [1, 2000 * 10**8, 100, 12_345, 1]
    raw = "0x" + "".join(w.to_bytes(32, "big").hex() for w in words)
    assert _updated_at(raw) == 12_345
    assert _updated_at("0x") is None
    assert _updated_at(ValueError("reverted")) is None


def test_symbols_as_string_or_bytes32() -> None:
    string = (32).to_bytes(32, "big") + (4).to_bytes(32, "big") + b"WETH".ljust(32, b"\0")
    assert _decode_symbol("0x" + string.hex()) == "WETH"
    assert _decode_symbol("0x" + b"MKR".ljust(32, b"\0").hex()) == "MKR"
    assert _decode_symbol("0x") is None
    assert _decode_symbol("0xzz") is None
