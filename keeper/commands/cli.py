"""The ``keeper`` command line: parse, dispatch, and turn every expected error into one line.

Exit codes: 0 success, 1 a failed operation (node down, devnet not running, ...), 2 bad usage
or bad configuration. No traceback reaches the user for an expected error.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import NoReturn

from keeper import __version__
from keeper.app.config import load_config
from keeper.errors import ConfigError, KeeperError, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error and exit code 2 (instead of the usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# Subcommand -> (module, one-line help). A module is imported only when its command runs (or
# its own --help is asked for): the keeper's full import graph (eth-account, numpy, the ABI
# artifacts) takes over a second, which `keeper config` or `keeper devnet status` need not pay.
COMMANDS: dict[str, tuple[str, str]] = {
    "devnet": ("keeper.devnet.commands", "a local Anvil chain running the real Aave V3"),
    "scan": ("keeper.commands.scan", "one-shot table of accounts by health factor"),
    "risk": ("keeper.commands.risk", "stress grid, cascade, VaR/ES and parameter what-ifs"),
    "run": ("keeper.commands.run", "follow the chain and liquidate (the daemon)"),
    "deploy-liquidator": ("keeper.commands.deploy_liquidator",
                          "deploy the FlashLiquidator contract owned by the configured key"),
    "backtest": ("keeper.commands.backtest",
                 "replay past blocks of a chain on a fork, the keeper racing for liquidations"),
    "forensics": ("keeper.commands.forensics",
                  "why the keeper did not take each liquidation of a block range"),
    "breaker": ("keeper.commands.breaker", "the oracle circuit breaker: reset a halted asset"),
}


def _chosen(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The CLI parser; with ``argv``, only the command it names is loaded in full."""
    chosen = _chosen(sys.argv[1:] if argv is None else argv) if argv != [] else None
    parser = _Parser(prog="keeper", description="Liquidation keeper for Aave V3.")
    parser.add_argument("--version", action="version", version=f"keeper {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        if chosen == name:
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=help_text)
    cfg = sub.add_parser("config", help="validate a configuration file and print it (no secrets)")
    cfg.add_argument("-c", "--config", type=Path, required=True)
    return parser


async def _dispatch(args: argparse.Namespace) -> int:
    if args.cmd in COMMANDS:
        run: Callable[[argparse.Namespace], Awaitable[int]] = importlib.import_module(
            COMMANDS[args.cmd][0]).run
        return await run(args)
    if args.cmd == "config":
        cfg = load_config(args.config)
        print(cfg.model_dump_json(indent=2, exclude={"secrets"}))
        return 0
    raise UsageError(f"unknown command {args.cmd}")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    parser = build_parser(argv)
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
