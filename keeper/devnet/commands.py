"""The ``keeper devnet`` subcommands: thin wrappers over lifecycle, driver and scenario."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from keeper.chain.rpc import HttpRpc
from keeper.devnet import lifecycle
from keeper.devnet.driver import Devnet
from keeper.devnet.manifest import Manifest
from keeper.devnet.reads import AccountData
from keeper.devnet.scenario import crash, plan_population, seed_population
from keeper.errors import DevnetError, UsageError

WAD = 10**18


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("devnet", help="a local Anvil chain running the real Aave V3")
    p.add_argument("--state-dir", help="where the devnet keeps its state (default .devnet)")
    dsub = p.add_subparsers(dest="devnet_cmd", required=True, metavar="COMMAND")
    up = dsub.add_parser("up", help="start the devnet (deploys once, then loads saved state)")
    up.add_argument("--port", type=_port, help="port to listen on (default: a free one)")
    up.add_argument("--fresh", action="store_true", help="deploy again instead of loading state")
    up.add_argument("--aave", choices=lifecycle.AAVE_VERSIONS, default=None,
                    help=f"Aave release to deploy (default {lifecycle.DEFAULT_AAVE_VERSION}; 3.6 is "
                         "compiled from npm aave-v3-origin on first use)")
    dsub.add_parser("down", help="stop the devnet")
    st = dsub.add_parser("status", help="is it running, where, at which block")
    st.add_argument("--json", action="store_true")
    sc = dsub.add_parser("scenario", help="seed a deterministic population of borrowers")
    sc.add_argument("--borrowers", type=_borrowers, default=200, help="10..10000 (default 200)")
    sc.add_argument("--seed", type=int, default=1)
    cr = dsub.add_parser("crash", help="move prices over several blocks, arbitraging the AMM")
    cr.add_argument("moves", nargs="+", metavar="ASSET=FRACTION",
                    help="e.g. WETH=0.75 moves WETH to 75%% of its price")
    cr.add_argument("--blocks", type=_positive, default=5)
    uw = dsub.add_parser("underwater", help="the seeded borrowers now under health factor 1")
    uw.add_argument("--json", action="store_true")


def _int_in(lo: int, hi: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be between {lo} and {hi}, got {v}")
        return v
    return parse


_port = _int_in(1, 65535, "port")
_borrowers = _int_in(10, 10_000, "borrowers")
_positive = _int_in(1, 10_000, "blocks")


def parse_moves(moves: Sequence[str], manifest: Manifest) -> dict[str, float]:
    out: dict[str, float] = {}
    symbols = {r.symbol for r in manifest.reserves}
    for m in moves:
        sym, sep, frac = m.partition("=")
        if not sep or sym not in symbols:
            raise UsageError(f"bad move {m!r}: expected ASSET=FRACTION with ASSET one of {sorted(symbols)}")
        try:
            f = float(frac)
        except ValueError:
            raise UsageError(f"bad move {m!r}: {frac!r} is not a number") from None
        if not 0 < f < 100:
            raise UsageError(f"bad move {m!r}: the fraction must be > 0")
        out[sym] = f
    return out


async def run(args: argparse.Namespace) -> int:
    sd = lifecycle.state_dir(args.state_dir)
    cmd = args.devnet_cmd
    if cmd == "up":
        t0 = time.perf_counter()
        manifest, loaded = await lifecycle.up(sd, port=args.port, fresh=args.fresh, aave=args.aave)
        how = "loaded saved state" if loaded else "running"
        print(f"devnet up (Aave {manifest.aave_version}, Pool revision {manifest.pool_revision}, "
              f"{how}, {time.perf_counter() - t0:.2f}s)")
        print(f"RPC URL:  {manifest.rpc_url}")
        print(f"manifest: {sd.manifest}")
        return 0
    if cmd == "down":
        print("devnet stopped" if await lifecycle.down(sd) else "devnet was not running")
        return 0
    if cmd == "status":
        return await _status(sd, args.json)
    manifest = lifecycle.running_manifest(sd)
    async with HttpRpc(manifest.rpc_url, timeout=120) as rpc:
        devnet = Devnet(rpc, manifest)
        if cmd == "scenario":
            t0 = time.perf_counter()
            plans = plan_population(args.seed, args.borrowers, manifest, await devnet.prices())
            await seed_population(devnet, plans)
            sd.population.write_text(json.dumps(
                {"seed": args.seed, "borrowers": [p.address for p in plans]}, indent=1))
            print(f"seeded {len(plans)} borrowers (seed {args.seed}) in {time.perf_counter() - t0:.1f}s")
            return 0
        if cmd == "crash":
            moves = parse_moves(args.moves, manifest)
            before = await devnet.prices()
            after = await crash(devnet, moves, args.blocks)
            for sym in sorted(after):
                if after[sym] != before[sym]:
                    print(f"{sym:7s} {before[sym] / 1e8:>12,.2f} -> {after[sym] / 1e8:>12,.2f} USD")
            return 0
        if cmd == "underwater":
            return await _underwater(sd, devnet, args.json)
    raise UsageError(f"unknown devnet command {cmd}")


async def _status(sd: lifecycle.StateDir, as_json: bool) -> int:
    pid = sd.running_pid()
    if pid is None:
        print(json.dumps({"running": False}) if as_json else "devnet is not running")
        return 1
    manifest = Manifest.load(sd.manifest)
    async with HttpRpc(manifest.rpc_url, timeout=5) as rpc:
        block = int(await rpc.call("eth_blockNumber"), 16)
    if as_json:
        print(json.dumps({"running": True, "pid": pid, "rpc_url": manifest.rpc_url,
                          "manifest": str(sd.manifest), "block": block}))
    else:
        print(f"devnet running (pid {pid}) at {manifest.rpc_url}, block {block}, manifest {sd.manifest}")
    return 0


async def _underwater(sd: lifecycle.StateDir, devnet: Devnet, as_json: bool) -> int:
    try:
        borrowers = json.loads(sd.population.read_text())["borrowers"]
    except (OSError, ValueError, KeyError):
        raise DevnetError("no seeded population: run `keeper devnet scenario` first") from None
    rows = [a for a in await devnet.account_data(borrowers) if a.health_factor < WAD]
    rows.sort(key=lambda a: a.health_factor)
    if as_json:
        print(json.dumps([{"user": a.user, "health_factor": str(a.health_factor),
                           "collateral_base": str(a.total_collateral_base),
                           "debt_base": str(a.total_debt_base)} for a in rows]))
        return 0
    print(format_accounts(rows, len(borrowers)))
    return 0


def format_accounts(rows: Sequence[AccountData], total: int) -> str:
    lines = [f"{len(rows)} of {total} borrowers under health factor 1 (Pool.getUserAccountData):",
             f"{'account':44s} {'health factor':>14s} {'collateral USD':>16s} {'debt USD':>14s}"]
    for a in rows:
        lines.append(f"{a.user:44s} {a.health_factor / WAD:>14.6f} "
                     f"{a.total_collateral_base / 1e8:>16,.2f} {a.total_debt_base / 1e8:>14,.2f}")
    return "\n".join(lines)
