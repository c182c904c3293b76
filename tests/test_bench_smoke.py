"""A tiny run of every benchmark scenario: `make bench` must keep working, whatever its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(240)  # every scenario starts its own fleet of processes
def test_every_scenario_runs_and_reports_its_targets(tmp_path):
    # Run as `make bench` runs it: its own process, whose hostile clients leave nothing behind in this one.
    subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(tmp_path / "smoke.json")],
        cwd=ROOT,
        check=True,
        timeout=230,
    )
    results = json.loads((tmp_path / "smoke.json").read_text())
    assert results["overhead"]["hub@c1"]["errors"] == 0 and results["overhead"]["hub@c1"]["requests"] == 20
    assert (
        results["streaming"]["hub@top"]["chunks"] == 4 * 21 and results["streaming"]["hub@top"]["errors"] == 0
    )
    assert results["registry"]["50_nodes"]["routing_decision_us"] > 0
    assert len(results["dialects"]) == 4 and all(r["errors"] == 0 for r in results["dialects"].values())
    assert results["footprint"]["ollama_top"]["rss_mb_peak"] > 0
    assert {t["name"] for t in results["targets"]} >= {"chunks relayed per second", "idle hub RSS"}
    hubs = results["hubs"]  # two hubs, one killed: nothing lost, no node past its slots
    assert hubs["async_lost"] == 0 and max(hubs["most_held_per_node"]) <= hubs["slots_per_node"]
    assert hubs["streams_served"] > 0 and "streams_refused" in hubs  # all served: a target of the full run
    for workload in ("mooncake", "synthetic"):  # the prefix scenario: one policy in the smoke run
        run_ = results["prefix"][workload]["capacity"]
        assert run_["completed"] + run_["errors"] == run_["requests"] > 0
        assert 0 < run_["prompt_tokens_processed"] <= run_["prompt_tokens"]
    for policy in ("capacity", "least-busy", "round-robin"):  # one load, 150 %, in the smoke run
        for load in ("150%",):
            run_ = results["scheduling"][load][policy]
            assert run_["jobs"] > 0 and run_["completed"] + run_["errors"] == run_["jobs"]
