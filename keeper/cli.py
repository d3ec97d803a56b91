"""The ``keeper`` command line: parse, dispatch, and turn every expected error into one line.

Exit codes: 0 success, 1 a failed operation (node down, devnet not running, ...), 2 bad usage
or bad configuration. No traceback reaches the user for an expected error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from keeper import __version__, deploy_cmd, run_cmd, scan_cmd
from keeper.config import load_config
from keeper.devnet import commands as devnet_commands
from keeper.errors import ConfigError, KeeperError, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error and exit code 2 (instead of the usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="keeper", description="Liquidation keeper for Aave V3.")
    parser.add_argument("--version", action="version", version=f"keeper {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    devnet_commands.add_parser(sub)
    scan_cmd.add_parser(sub)
    run_cmd.add_parser(sub)
    deploy_cmd.add_parser(sub)
    cfg = sub.add_parser("config", help="validate a configuration file and print it (no secrets)")
    cfg.add_argument("-c", "--config", type=Path, required=True)
    return parser


async def _dispatch(args: argparse.Namespace) -> int:
    if args.cmd == "devnet":
        return await devnet_commands.run(args)
    if args.cmd == "deploy-liquidator":
        return await deploy_cmd.run(args)
    if args.cmd == "run":
        return await run_cmd.run(args)
    if args.cmd == "scan":
        return await scan_cmd.run(args)
    if args.cmd == "config":
        cfg = load_config(args.config)
        print(cfg.model_dump_json(indent=2, exclude={"secrets"}))
        return 0
    raise UsageError(f"unknown command {args.cmd}")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = asyncio.run(_dispatch(args))
    except (ConfigError, UsageError) as exc:
        print(f"keeper: error: {exc}", file=sys.stderr)
        code = 2
    except KeeperError as exc:
        print(f"keeper: error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # `keeper ... | head`: the reader left; not an error worth a traceback.
        sys.stderr.close()
        code = 0
    sys.exit(code)
