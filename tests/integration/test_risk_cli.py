"""``keeper risk`` on a crashed devnet market: the JSON document, and a report directory with
its Markdown and charts; the grid's unshocked accounts are the chain's own."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from keeper.commands import risk as risk_cmd
from keeper.devnet.driver import Devnet
from keeper.devnet.scenario import crash, plan_population, seed_population

pytestmark = pytest.mark.integration


async def test_keeper_risk_json_and_report(
    devnet: Devnet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plans = plan_population(8, 120, devnet.m, await devnet.prices())
    await seed_population(devnet, plans)
    await crash(devnet, {"WETH": 0.8}, blocks=2)
    devnet.m.save(tmp_path / "manifest.json")
    config = tmp_path / "keeper.toml"
    config.write_text(f'[network]\ndevnet_manifest = "{tmp_path / "manifest.json"}"\n'
                      f'[state]\nsqlite = "{tmp_path / "keeper.sqlite"}"\n')
    out = tmp_path / "report"
    args = argparse.Namespace(config=config, json=True, out=out, paths=2000, seed=3)

    assert await risk_cmd.run(args) == 0
    doc = json.loads(capsys.readouterr().out)

    assert doc["accounts"] == len(plans)
    levels = 9
    assert len(doc["grid"]) == levels * (1 + len(doc["assets"]))
    drops = [g["liquidatable"] for g in doc["grid"][:levels]]
    assert drops == sorted(drops) and drops[-1] > drops[0]
    assert {f["level"] for f in doc["var"]["bad_debt"]} == {0.95, 0.99}
    assert doc["cascade"]["rounds"] and doc["params"]["points"]
    assert doc["report"] == str(out / "report.md")
    for name in ("report.md", "shock_grid.png", "cascade.png", "var.png", "params.png"):
        assert (out / name).stat().st_size > 0, name
    text = (out / "report.md").read_text()
    assert "## Shock grid" in text and "![var](var.png)" in text

    # Seeded: the same run gives the same tails.
    assert await risk_cmd.run(argparse.Namespace(config=config, json=True, out=None,
                                                 paths=2000, seed=3)) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["var"] == doc["var"]
