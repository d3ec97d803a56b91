"""``keeper backtest -c CONFIG --fork-url URL --from N --to M``: what the keeper would have done
in blocks N+1 … M of that chain, replayed on a fork started at N (``keeper.app.backtest``)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from keeper.app.backtest import Backtest, run_backtest
from keeper.app.backtest_report import format_markdown, format_table, to_json
from keeper.app.config import KeeperConfig, load_config
from keeper.app.replay import Replayer
from keeper.app.report import asset_symbols
from keeper.app.root import Keeper, build
from keeper.chain.rpc import HttpRpc, public_url
from keeper.commands.rehearsal import own_liquidator
from keeper.commands.target import resolve_target
from keeper.devnet.anvil import Anvil, AnvilOptions
from keeper.errors import UsageError
from keeper.obs.logging import configure_logging, get_logger

log = get_logger(__name__)


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("backtest", help="replay past blocks of a chain on a fork, keeper racing")
    p.add_argument("-c", "--config", type=Path, help="TOML config (env KEEPER_* overrides it)")
    p.add_argument("--fork-url", metavar="URL", required=True, help="the source chain")
    p.add_argument("--from", dest="from_block", type=int, required=True, metavar="N",
                   help="fork at this block; the replay starts with block N+1")
    p.add_argument("--to", dest="to_block", type=int, required=True, metavar="M",
                   help="last source block replayed")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="write report.md, report.json and crash.png there")
    p.add_argument("--log-level", default="WARNING",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"])


async def run(args: argparse.Namespace) -> int:
    if not 0 <= args.from_block < args.to_block:
        raise UsageError("--from N --to M needs 0 <= N < M")
    cfg = load_config(args.config)
    handle = configure_logging(args.log_level)
    try:
        bt, symbols = await _backtest(cfg, args.fork_url, args.from_block, args.to_block)
    finally:
        handle.stop()
    report = to_json(bt, symbols)
    if args.out is not None:
        write_outputs(bt, symbols, report, args.out)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(bt, symbols))
    sys.stdout.flush()
    return 0


async def _backtest(cfg: KeeperConfig, url: str, from_block: int,
                    to_block: int) -> tuple[Backtest, dict[str, str]]:
    # Arrival order in the mempool: the source's transactions keep their order in a block.
    node = await Anvil.start(AnvilOptions(chain_id=cfg.network.chain_id, fork_url=url,
                                          fork_block=from_block, order="fifo"),
                             ready_timeout=60)
    log.info("anvil_fork_started", fork_url=public_url(url), fork_block=from_block,
             rpc_url=node.url)
    try:
        with tempfile.TemporaryDirectory(prefix="keeper-backtest-") as tmp:
            cfg = _on_fork(cfg, node.url, Path(tmp))
            target = resolve_target(cfg)
            async with (HttpRpc(url, timeout=cfg.network.request_timeout) as source,
                        HttpRpc(node.url, timeout=cfg.network.request_timeout) as fork):
                head = int(str(await source.call("eth_blockNumber")), 16)
                if to_block > head:
                    raise UsageError(f"--to {to_block}: the source chain's head is {head}")
                replayer = Replayer(source, fork)
                await replayer.prepare()
                start = await replayer.fetch(from_block)
                # Our own setup (a liquidator deployed for the replay) lands in blocks
                # stamped with block N's time, before the first source block.
                async with replayer.keeper_window(start.timestamp):
                    if target.liquidator is None:
                        target = await own_liquidator(cfg, target, node.url)
                async with build(cfg, target, dry_run=False) as keeper:
                    bt = await run_backtest(keeper, source, replayer, from_block, to_block)
                    return bt, await _symbols(keeper)
    finally:
        await node.stop()


def _on_fork(cfg: KeeperConfig, url: str, tmp: Path) -> KeeperConfig:
    """The config pointed at the fork, with a throwaway book; one confirmation, since the
    fork mines only what the replay seals and nothing would ever come on top."""
    network = cfg.network.model_copy(update={"rpc_urls": [url], "ws_url": None})
    state = cfg.state.model_copy(update={"sqlite": tmp / "fork.sqlite"})
    executor = cfg.executor.model_copy(update={"confirmations": 1})
    return cfg.model_copy(update={"network": network, "state": state, "executor": executor})


async def _symbols(keeper: Keeper) -> dict[str, str]:
    return await asset_symbols(keeper, {r.asset for r in
                                        keeper.sync.book.market().reserves.values()})


def write_outputs(bt: Backtest, symbols: dict[str, str], report: dict[str, Any],
                  out: Path) -> None:
    """report.json, crash.png and report.md (which shows the chart) in ``out``."""
    from keeper.app.backtest_chart import write_chart  # matplotlib only when asked for

    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    write_chart(bt, symbols, out / "crash.png")
    (out / "report.md").write_text(format_markdown(bt, symbols, "crash.png"))
