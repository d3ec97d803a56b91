"""ABI encoding with eth-abi, straight from a contract's JSON ABI.

web3's contract objects are ~20x slower to encode than eth-abi; the keeper encodes calldata
with these small frozen descriptions instead. ``Abi(json)["liquidationCall"].encode(...)``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak

from keeper.chain.abi_words import decode_words
from keeper.errors import KeeperError


def canonical_type(param: Mapping[str, Any]) -> str:
    """The canonical ABI type string of one parameter, tuples expanded."""
    typ = str(param["type"])
    if typ.startswith("tuple"):
        inner = ",".join(canonical_type(c) for c in param["components"])
        return f"({inner}){typ[len('tuple'):]}"
    return typ


@functools.lru_cache(maxsize=1024)
def _selector(signature: str) -> bytes:
    """The 4-byte selector of ``signature``, hashed once (a send's calldata asks each time)."""
    return keccak(text=signature)[:4]


@functools.lru_cache(maxsize=1024)
def _topic0(name: str, inputs: tuple[str, ...]) -> str:
    """An event's topic 0, hashed once: reading our receipts (the batch's results, the
    profit) asks it for every log (a keccak each: ~3.6% of the daemon's event loop through
    the 10,000-borrower crash)."""
    return "0x" + keccak(text=f"{name}({','.join(inputs)})").hex()


def hexstr_to_bytes(data: str) -> bytes:
    return bytes.fromhex(data[2:] if data.startswith("0x") else data)


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(self.inputs)})"

    @property
    def selector(self) -> bytes:
        return _selector(self.signature)

    def encode(self, *args: Any) -> bytes:
        """Calldata: the selector followed by the encoded arguments."""
        return self.selector + abi_encode(list(self.inputs), list(args))

    def encode_hex(self, *args: Any) -> str:
        return "0x" + self.encode(*args).hex()

    def decode_output(self, data: bytes | str) -> tuple[Any, ...]:
        raw = hexstr_to_bytes(data) if isinstance(data, str) else data
        return tuple(abi_decode(list(self.outputs), raw))


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    inputs: tuple[str, ...]
    indexed: tuple[bool, ...]
    names: tuple[str, ...]

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(self.inputs)})"

    @property
    def topic0(self) -> str:
        return _topic0(self.name, self.inputs)

    def decode(self, topics: Sequence[str], data: str) -> dict[str, Any]:
        """Decode a log's topics and data into {name: value}."""
        idx_types, data_types = _split(self.inputs, self.indexed)
        if len(topics) - 1 != len(idx_types):
            raise KeeperError(f"{self.name}: expected {len(idx_types)} indexed topics")
        idx_raw = [hexstr_to_bytes(tp) for tp in topics[1:]]
        idx_vals = decode_words(idx_types, b"".join(idx_raw))
        if idx_vals is None:
            idx_vals = [abi_decode([t], raw)[0] for t, raw in zip(idx_types, idx_raw, strict=True)]
        data_vals: Sequence[Any] = []
        if data_types:
            raw = hexstr_to_bytes(data)
            data_vals = decode_words(data_types, raw) or abi_decode(data_types, raw)
        out: dict[str, Any] = {}
        it_idx, it_data = iter(idx_vals), iter(data_vals)
        for name, is_idx in zip(self.names, self.indexed, strict=True):
            out[name] = next(it_idx) if is_idx else next(it_data)
        return out


@functools.lru_cache(maxsize=1024)
def _split(inputs: tuple[str, ...], indexed: tuple[bool, ...]
           ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """An event's indexed types and its data types."""
    return (tuple(t for t, i in zip(inputs, indexed, strict=True) if i),
            tuple(t for t, i in zip(inputs, indexed, strict=True) if not i))


class Abi:
    """Functions and events of one contract ABI, by name."""

    def __init__(self, abi: Iterable[Mapping[str, Any]]) -> None:
        self.functions: dict[str, Function] = {}
        self.events: dict[str, Event] = {}
        self.constructor_inputs: tuple[str, ...] = ()
        for item in abi:
            kind = item.get("type")
            if kind == "function":
                fn = Function(
                    str(item["name"]),
                    tuple(canonical_type(p) for p in item.get("inputs", [])),
                    tuple(canonical_type(p) for p in item.get("outputs", [])),
                )
                # Overloads keep the first; callers needing another use its signature.
                self.functions.setdefault(fn.name, fn)
                self.functions[fn.signature] = fn
            elif kind == "event":
                ins = item.get("inputs", [])
                self.events[str(item["name"])] = Event(
                    str(item["name"]),
                    tuple(canonical_type(p) for p in ins),
                    tuple(bool(p.get("indexed")) for p in ins),
                    tuple(str(p.get("name", "")) for p in ins),
                )
            elif kind == "constructor":
                self.constructor_inputs = tuple(canonical_type(p) for p in item.get("inputs", []))

    def __getitem__(self, name: str) -> Function:
        try:
            return self.functions[name]
        except KeyError:
            raise KeeperError(f"ABI has no function {name!r}") from None

    def event(self, name: str) -> Event:
        try:
            return self.events[name]
        except KeyError:
            raise KeeperError(f"ABI has no event {name!r}") from None

    def encode_constructor(self, *args: Any) -> bytes:
        if not self.constructor_inputs:
            return b""
        return abi_encode(list(self.constructor_inputs), list(args))
