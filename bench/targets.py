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
    return targets
