"""The stress alert fires as ops/alerts_test.yml says (``promtool test rules``), and the
dashboard's stress panels name only the keeper's own metrics."""

from __future__ import annotations

import pytest

from keeper.obs.metrics import Metrics
from tests.e2e.test_prometheus import OPS, PROMTOOL, exported, names_in, needs_prometheus, run

pytestmark = pytest.mark.integration


@needs_prometheus
async def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    assert PROMTOOL is not None
    code, out = await run(PROMTOOL, "test", "rules", str(OPS / "alerts_test.yml"))
    assert code == 0, out


def test_stress_panels_and_alert_name_exported_metrics() -> None:
    have = exported(Metrics().render().decode())
    dashboard = (OPS / "grafana" / "keeper-dashboard.json").read_text()
    wanted = {n for n in names_in(dashboard) | names_in((OPS / "alerts.yml").read_text())
              if n.startswith("keeper_risk_")}
    assert wanted == {"keeper_risk_bad_debt_usd", "keeper_risk_liquidatable_debt_usd"}
    assert wanted <= have
