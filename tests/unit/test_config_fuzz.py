"""Bad input, generated: every malformed config and every bad argument is one line, exit code 2.

The configs go through the real entry point (``keeper.commands.cli.main``, in-process) with
``config``, ``run --once`` and ``scan``: wrong types, values out of range (the bounds are read
from the model, so a new field is fuzzed too), non-finite floats, unknown fields, bytes that are
not UTF-8, binary files, empty files, directories and non-databases as paths. A few go through a
subprocess as well, as a user would run them.
"""

from __future__ import annotations

import math
import os
import string
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import annotated_types as at
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

# Imported up front: the full graph (py_ecc) raises the recursion limit on import, which
# hypothesis warns about when it happens inside an example.
import keeper.commands.run
import keeper.commands.scan  # noqa: F401
from keeper.app.config import KeeperConfig
from keeper.commands.cli import main

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = (("config",), ("run", "--once"), ("scan",))
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

Case = tuple[bytes, str, tuple[str, ...]]  # file content, what the line must name, the command


# ---- TOML text of a {section: {field: value}} document ------------------------------------------
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}"
                             for c in v) + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml(doc: dict[str, dict[str, Any]]) -> bytes:
    parts = [f"[{section}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in fields.items())
             for section, fields in doc.items()]
    return "\n".join(parts).encode()


def with_chain_id(section: str, field: str, value: Any) -> dict[str, dict[str, Any]]:
    """One bad field; the network's chain id given (unless it is the field under test)."""
    doc: dict[str, dict[str, Any]] = {"network": {"chain_id": 31337}}
    if section == "network" and field == "chain_id":
        doc = {"network": {}}
    doc.setdefault(section, {})[field] = value
    return doc


# ---- the fields, read from the model ---------------------------------------------------------
def _sections() -> dict[str, type[BaseModel]]:
    out = {}
    for name, info in KeeperConfig.model_fields.items():
        if name != "secrets" and isinstance(info.annotation, type):
            out[name] = info.annotation
    return out


SECTIONS = _sections()
NUMERIC = [(s, f, info) for s, model in SECTIONS.items() for f, info in model.model_fields.items()
           if info.annotation in (int, float)]
OTHER = [(s, f) for s, model in SECTIONS.items() for f, info in model.model_fields.items()
         if info.annotation not in (int, float, bool)]
BOOLS = [(s, f) for s, model in SECTIONS.items() for f, info in model.model_fields.items()
         if info.annotation is bool]


def _bounds(info: Any) -> tuple[float | None, bool, float | None, bool]:
    """(low, low inclusive, high, high inclusive) of a numeric field."""
    lo: float | None = None
    hi: float | None = None
    lo_inc = hi_inc = True
    for m in info.metadata:
        if isinstance(m, at.Ge):
            lo = float(m.ge)  # type: ignore[arg-type]
        elif isinstance(m, at.Gt):
            lo, lo_inc = float(m.gt), False  # type: ignore[arg-type]
        elif isinstance(m, at.Le):
            hi = float(m.le)  # type: ignore[arg-type]
        elif isinstance(m, at.Lt):
            hi, hi_inc = float(m.lt), False  # type: ignore[arg-type]
    return lo, lo_inc, hi, hi_inc


def test_every_numeric_field_has_a_range() -> None:
    for s, f, info in NUMERIC:
        lo, _, hi, _ = _bounds(info)
        assert lo is not None and hi is not None, f"{s}.{f} has no range"


@st.composite
def out_of_range(draw: st.DrawFn) -> Case:
    s, f, info = draw(st.sampled_from(NUMERIC))
    lo, lo_inc, hi, hi_inc = _bounds(info)
    assert lo is not None and hi is not None
    if info.annotation is int:
        below = st.integers(-10**30, math.ceil(lo) - 1 if lo_inc else math.floor(lo))
        above = st.integers(math.floor(hi) + 1 if hi_inc else math.ceil(hi), 10**30)
        value: Any = draw(below | above | st.sampled_from([1.5, -0.25, "1e20", 1e20]))
    else:
        value = draw(st.floats(max_value=lo, exclude_max=lo_inc, allow_nan=False,
                               allow_infinity=False)
                     | st.floats(min_value=hi, exclude_min=hi_inc, allow_nan=False,
                                 allow_infinity=False)
                     | st.sampled_from([math.inf, -math.inf, math.nan, 1e300, "1e400", "nan"]))
    return toml(with_chain_id(s, f, value)), f"{s}.{f}", draw(st.sampled_from(COMMANDS))


WRONG_TYPES = st.sampled_from([[1, 2], {"x": 1}, True, 1.5]) | st.text(
    alphabet=string.ascii_letters + " -_.", max_size=12).filter(lambda t: t.strip() != "")


@st.composite
def wrong_type(draw: st.DrawFn) -> Case:
    kind = draw(st.sampled_from(["numeric", "bool", "other"]))
    if kind == "numeric":
        s, f, _ = draw(st.sampled_from(NUMERIC))
        value: Any = draw(WRONG_TYPES.filter(lambda v: not isinstance(v, float)))
    elif kind == "bool":
        s, f = draw(st.sampled_from(BOOLS))
        value = draw(st.sampled_from([2, -1, 0.5, "maybe", "", [True], {"x": True}]))
    else:
        s, f = draw(st.sampled_from(OTHER))
        value = draw(st.sampled_from([12, -3, 2.5, [[1]], {"x": 1}]))
    return toml(with_chain_id(s, f, value)), f"{s}.{f}", draw(st.sampled_from(COMMANDS))


@st.composite
def bad_string(draw: st.DrawFn) -> Case:
    """Strings of the right type and the wrong shape: URLs, addresses, hashes, names."""
    junk = st.text(alphabet=string.printable.strip() + "é☃", min_size=0, max_size=50)
    s, f, value = draw(st.sampled_from([
        ("network", "rpc_urls", [draw(junk.filter(lambda t: not t.startswith(("http", "ws"))))]),
        ("network", "ws_url", draw(junk.filter(lambda t: not t.startswith(("http", "ws"))))),
        ("network", "name", ""),
        ("aave", "pool_addresses_provider", "0x" + draw(st.text("0123456789abcdefg", max_size=45)
                                                        .filter(lambda t: len(t) != 40))),
        ("aave", "rules", draw(junk.filter(lambda t: t not in ("auto", "v3.0", "v3.1", "v3.2", "v3.3", "v3.4", "v3.5", "v3.6")))),
        ("dex", "hubs", ["0x" + draw(st.text("0123456789abcdef", max_size=39))]),
        ("dex", "pair_init_code_hash", "0x" + draw(st.text("0123456789abcdef", max_size=63))),
        ("executor", "private_relay_url", "ftp://" + draw(junk)),
    ]))
    return toml(with_chain_id(s, f, value)), f"{s}.{f}", draw(st.sampled_from(COMMANDS))


NAMES = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=16)


@st.composite
def unknown_field(draw: st.DrawFn) -> Case:
    s = draw(st.sampled_from(sorted(SECTIONS)))
    known = set(SECTIONS[s].model_fields) | {"private_key", "keystore_password"}
    f = draw(NAMES.filter(lambda n: n not in known))
    return toml(with_chain_id(s, f, 1)), f"{s}.{f}", draw(st.sampled_from(COMMANDS))


@st.composite
def bad_encoding(draw: st.DrawFn) -> Case:
    """Not UTF-8, binary, empty: the line names the file."""
    body = draw(st.sampled_from([
        b"\xff\xfe" + "[network]\nchain_id = 1\n".encode("utf-16-le"),
        b"[network]\nname = \"caf\xe9\"\n",  # Latin-1
        b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)),
        b"", b"\n\n  \n", b"# nothing but a comment\n",
    ]) | st.binary(min_size=1, max_size=64).map(lambda b: b"\x80" + b))
    return body, "{file}", draw(st.sampled_from(COMMANDS))


@st.composite
def bad_path(draw: st.DrawFn) -> Case:
    """A directory where a file goes; a file that is not SQLite as the state."""
    s, f = draw(st.sampled_from([("network", "devnet_manifest"), ("state", "sqlite"),
                                 ("account", "keystore")]))
    value = draw(st.sampled_from(["{dir}", "{dir}/", "."]))
    if s == "state" and draw(st.booleans()):
        value = "{notdb}"
    return toml(with_chain_id(s, f, value)), f"{s}.{f}", draw(st.sampled_from(COMMANDS))


@st.composite
def no_chain_id(draw: st.DrawFn) -> Case:
    """Off the devnet the chain id must be given (a default would sign for chain 31337)."""
    network: dict[str, Any] = draw(st.sampled_from([
        {"name": draw(NAMES.filter(lambda n: n != "devnet"))},
        {"rpc_urls": ["https://eth.example.invalid"]},
        {"ws_url": "wss://eth.example.invalid"},
    ]))
    return toml({"network": network}), "network.chain_id", draw(st.sampled_from(COMMANDS))


BAD_CONFIGS = (out_of_range() | wrong_type() | bad_string() | unknown_field() | bad_encoding()
               | bad_path() | no_chain_id())


@contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="keeper-fuzz-") as tmp:
        root = Path(tmp)
        (root / "adir").mkdir()
        (root / "notdb").write_bytes(b"not a database, only text\n" * 4)
        yield root


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    code = exit_.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


def assert_one_line(code: int, err: str, needle: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("keeper") and ": error: " in lines[0], err
    assert needle in lines[0], (needle, err)


@pytest.fixture
def no_keeper_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.upper().startswith("KEEPER_"):
            monkeypatch.delenv(k)


@FUZZ
@given(case=BAD_CONFIGS)
def test_bad_configs_are_one_line_and_exit_2(case: Case, capsys: pytest.CaptureFixture[str],
                                            no_keeper_env: None) -> None:
    body, needle, command = case
    with workspace() as root:
        subst = {"{dir}": str(root / "adir"), "{notdb}": str(root / "notdb")}
        for k, v in subst.items():
            body = body.replace(k.encode(), v.encode())
        path = root / "keeper.toml"
        path.write_bytes(body)
        code, err = run_cli([command[0], "-c", str(path), *command[1:]], capsys)
    assert_one_line(code, err, needle.replace("{file}", str(path)))


# ---- arguments --------------------------------------------------------------------------------
def _not_an_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return not text.startswith("-")  # "-x" would read as an option, not a value
    return False


NOT_A_COUNT = st.text(min_size=1, max_size=12).filter(_not_an_int)
NOT_IN = {"level": ["DEBUG", "INFO", "WARNING", "ERROR"]}


@st.composite
def bad_arguments(draw: st.DrawFn) -> tuple[list[str], str]:
    """An argv with one bad argument that must be refused before anything runs."""
    choice = draw(st.integers(0, 8))
    if choice == 0:
        return ["scan", "--limit", draw(NOT_A_COUNT | st.integers(-10**9, -1).map(str))], "limit"
    if choice == 1:
        level = draw(st.text(string.ascii_letters, min_size=1, max_size=8)
                     .filter(lambda t: t not in NOT_IN["level"]))
        return ["run", "--once", "--log-level", level], "invalid choice"
    if choice == 2:
        return ["run", "--fork-block", draw(NOT_A_COUNT)], "--fork-block"
    if choice == 3:
        port = draw(NOT_A_COUNT | st.integers(65536, 10**9).map(str) | st.just("0"))
        return ["devnet", "up", "--port", port], "port"
    if choice == 4:
        n = draw(NOT_A_COUNT | st.integers(-10**6, 9).map(str) | st.integers(10_001, 10**9).map(str))
        return ["devnet", "scenario", "--borrowers", n], "borrowers"
    if choice == 5:
        return ["devnet", "crash", "WETH=0.5", "--blocks", draw(NOT_A_COUNT)], "blocks"
    if choice == 6:
        word = draw(st.text(string.ascii_lowercase + "-_", min_size=1, max_size=12).filter(
            lambda w: not w.startswith("-") and w not in
            {"devnet", "scan", "run", "config", "deploy-liquidator"}))
        return [word], "invalid choice"
    if choice == 7:
        return ["config"], "required"
    # Not a prefix of --config or --help: argparse takes those abbreviations.
    flag = "--" + draw(st.text(string.ascii_lowercase + "-", min_size=1, max_size=12).filter(
        lambda t: not "config".startswith(t) and not "help".startswith(t)))
    return ["config", "-c", "x.toml", flag], "unrecognized arguments"


@FUZZ
@given(case=bad_arguments())
def test_bad_arguments_are_one_line_and_exit_2(case: tuple[list[str], str],
                                              capsys: pytest.CaptureFixture[str],
                                              no_keeper_env: None) -> None:
    argv, needle = case
    code, err = run_cli(argv, capsys)
    assert_one_line(code, err, needle)


# ---- as a user runs it ------------------------------------------------------------------------
@pytest.mark.parametrize(("command", "body", "needle"), [
    (("config",), b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8"),
    (("run", "--once"), b"[executor]\nmin_profit_usd = 1e400\n", "executor.min_profit_usd"),
    (("scan",), b'[network]\nchain_id = 31337\n[state]\nsqlite = "."\n', "state.sqlite"),
])
def test_bad_config_in_a_subprocess(tmp_path: Path, command: tuple[str, ...], body: bytes,
                                    needle: str) -> None:
    path = tmp_path / "keeper.toml"
    path.write_bytes(body)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("KEEPER_")}
    proc = subprocess.run([sys.executable, "-m", "keeper", command[0], "-c", str(path),
                           *command[1:]], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=60, check=False)
    assert_one_line(proc.returncode, proc.stderr, needle)


def test_short_private_key_is_refused_without_echo(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   no_keeper_env: None) -> None:
    key = "0x" + "a" * 63
    monkeypatch.setenv("KEEPER_PRIVATE_KEY", key)
    code, err = run_cli(["config", "-c", str(ROOT / "config" / "devnet.toml")], capsys)
    assert_one_line(code, err, "KEEPER_PRIVATE_KEY")
    assert "a" * 40 not in err
