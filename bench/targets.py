"""The benchmark targets, checked against a run's results; a missed target is reported, never hidden."""

from __future__ import annotations


def check_targets(results: dict) -> list[dict]:
    targets: list[dict] = []

    def add(name: str, target: str, measured: str, met: bool) -> None:
        targets.append({"name": name, "target": target, "measured": measured, "met": bool(met)})

    if overhead := results.get("overhead"):
        direct, hub = overhead["direct@c1"], overhead["hub@c1"]
        p50, p99 = hub["p50_ms"] - direct["p50_ms"], hub["p99_ms"] - direct["p99_ms"]
        add("hub+node adds at p50, c=1", "< 1 ms", f"{p50:.3f} ms", p50 < 1)
        add("hub+node adds at p99, c=1", "< 3 ms", f"{p99:.3f} ms", p99 < 3)
        ratio = overhead["hub@c32"]["per_second"] / overhead["direct@c32"]["per_second"]
        add("throughput through the hub at c=32", ">= 0.5x direct", f"{ratio:.2f}x", ratio >= 0.5)
        if (queued := overhead.get("hub-1slot@c32")) is not None:
            free, waiting = overhead["hub@c32"]["hub_cpu_us_per_request"], queued["hub_cpu_us_per_request"]
            share = waiting / max(free, 1e-9)
            add(
                "hub CPU per job queued at the hub (1 slot) against free (256)",
                "<= 1.15x",
                f"{share:.2f}x",
                share <= 1.15,
            )
    if journal := results.get("journal"):
        # The throughput ratio swings by more than 5 % between two identical hubs on this VM (see
        # control_throughput_ratio); the journal's own CPU per job, against the hub's, is exact.
        share = journal["journal_thread_cpu_us_per_job"] / journal["hub_cpu_us_per_job_with"]
        add("the job journal's share of the hub's CPU per job", "< 5 %", f"{share * 100:.1f} %", share < 0.05)
    if streaming := results.get("streaming"):
        rate = streaming["hub@top"]["chunks_per_second"]
        add("chunks relayed per second", ">= 20,000", f"{rate:,.0f}", rate >= 20000)
    if registry := results.get("registry"):
        largest = registry[max(registry, key=lambda k: int(k.split("_")[0]))]
        add(
            "hub RSS with the largest registry",
            "< 200 MB",
            f"{largest['hub_rss_mb']} MB",
            largest["hub_rss_mb"] < 200,
        )
        add(
            "routing decision, largest registry",
            "< 1 ms",
            f"{largest['routing_decision_us']} µs",
            largest["routing_decision_us"] < 1000,
        )
    if footprint := results.get("footprint"):
        add("idle hub RSS", "< 60 MB", f"{footprint['hubd_rss_mb']} MB", footprint["hubd_rss_mb"] < 60)
        add(
            "idle node agent RSS",
            "< 45 MB",
            f"{footprint['noded_rss_mb']} MB",
            footprint["noded_rss_mb"] < 45,
        )
        top = footprint["ollama_top"]
        add(
            "ollama-top CPU, 100 nodes at 1 s",
            "< 3 % of a core",
            f"{top['cpu_percent']} %",
            top["cpu_percent"] < 3,
        )
        add("ollama-top memory", "< 80 MB", f"{top['rss_mb_peak']} MB", top["rss_mb_peak"] < 80)
    if scheduling := results.get("scheduling"):
        for load in (key for key in scheduling if key.endswith("%")):
            run, bound = scheduling[load]["capacity"], scheduling[load]["lower_bound"]
            ratio = run["latency_p50_s"] / max(bound["latency_p50_s"], 1e-9)
            if load == "70%":
                add(
                    "scheduling p50 at 70 %, against its lower bound",
                    "<= 1.3x",
                    f"{ratio:.2f}x",
                    ratio <= 1.3,
                )
            most = max(scheduling[load][p]["completed_per_second"] for p in ("capacity", "least-busy"))
            modelled = scheduling.get("ceiling_jobs_per_second", scheduling["capacity_jobs_per_second"])
            add(
                f"throughput at {load}, never above the modelled capacity",
                f"<= {modelled}",
                f"{most}",
                most <= modelled,
            )
    for workload, runs in (results.get("prefix") or {}).items():
        _prefix_targets(add, workload, runs)
    if (hubs := results.get("hubs")) and "skipped" not in hubs:
        lost = hubs["async_lost"]
        add("async jobs lost when a hub is killed", "0", str(lost), lost == 0)
        most = max(hubs["most_held_per_node"])
        add(
            "most requests inside one Ollama, two hubs",
            f"<= {hubs['slots_per_node']} (its slots)",
            str(most),
            most <= hubs["slots_per_node"],
        )
        begun, served = hubs["streams_begun_while_a_hub_was_down"], hubs["of_those_served"]
        add("streams begun while a hub was down, served", "all", f"{served} of {begun}", served == begun)
    return targets


def _prefix_targets(add, workload: str, runs: dict) -> None:
    ours = runs.get("capacity")
    if ours is None:
        return
    for other, share in (("capacity-no-prefix", 3), ("round-robin", 5)):
        if (theirs := runs.get(other)) is not None:
            ratio = ours["ttft_p50_s"] / max(theirs["ttft_p50_s"], 1e-9)
            add(
                f"prefix {workload}: TTFT p50 against {other}",
                f"<= 1/{share}",
                f"{ratio:.2f}x",
                ratio * share <= 1,
            )
    if (herd := runs.get("affinity")) is not None:
        better = ours["ttft_p50_s"] <= herd["ttft_p50_s"] and ours["ttft_p99_s"] <= herd["ttft_p99_s"]
        p50, p99 = (
            f"{ours['ttft_p50_s']} vs {herd['ttft_p50_s']}",
            f"{ours['ttft_p99_s']} vs {herd['ttft_p99_s']}",
        )
        measured = f"p50 {p50}, p99 {p99}"
        add(f"prefix {workload}: TTFT better than affinity (Herd)", "p50 and p99", measured, better)
    if (plain := runs.get("capacity-no-prefix")) is not None:
        share = ours["prompt_tokens_processed"] / max(plain["prompt_tokens_processed"], 1)
        add(
            f"prefix {workload}: prompt tokens processed against capacity-no-prefix",
            "<= 0.5x",
            f"{share:.2f}x",
            share <= 0.5,
        )
