"""A tiny run of every benchmark scenario: `make bench` must keep working, whatever its figures."""

from __future__ import annotations

import pytest

from bench.__main__ import run
from bench.scenarios import SMOKE


@pytest.mark.timeout(180)  # every scenario starts its own fleet of processes
def test_every_scenario_runs_and_reports_its_targets():
    results = run(SMOKE)
    assert results["overhead"]["hub@c1"]["errors"] == 0 and results["overhead"]["hub@c1"]["requests"] == 20
    assert (
        results["streaming"]["hub@top"]["chunks"] == 4 * 21 and results["streaming"]["hub@top"]["errors"] == 0
    )
    assert results["registry"]["50_nodes"]["routing_decision_us"] > 0
    assert len(results["dialects"]) == 4 and all(r["errors"] == 0 for r in results["dialects"].values())
    assert results["footprint"]["ollama_top"]["rss_mb_peak"] > 0
    assert {t["name"] for t in results["targets"]} >= {"chunks relayed per second", "idle hub RSS"}
    for policy in ("capacity", "least-busy", "round-robin"):  # one load, 150 %, in the smoke run
        for load in ("150%",):
            run_ = results["scheduling"][load][policy]
            assert run_["jobs"] > 0 and run_["completed"] + run_["errors"] == run_["jobs"]
