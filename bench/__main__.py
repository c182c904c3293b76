"""`make bench`: every scenario side by side in one run; a table on screen and JSON in bench/results/."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import psutil

from bench.dialects import dialects
from bench.footprint import footprint
from bench.hostile import hostile
from bench.hubs import hubs
from bench.prefix import POLICIES as PREFIX_POLICIES
from bench.prefix import prefix
from bench.real_model import real_model
from bench.scenarios import SMOKE, Size, journal_cost, overhead, registry_scale, streaming
from bench.scheduling import POLICIES, scheduling
from bench.targets import check_targets

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
    }


def run(size: Size, only: set[str] | None = None) -> dict:
    scenarios = {
        "overhead": overhead,
        "journal": journal_cost,
        "streaming": streaming,
        "dialects": dialects,
        "registry": registry_scale,
        "footprint": footprint,
        "hostile": hostile,
        "scheduling": scheduling,
        "prefix": prefix,
        "hubs": hubs,
        "real_model": real_model,
    }
    results: dict = {"machine": machine(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for name, scenario in scenarios.items():
        if only and name not in only:
            continue
        print(f"running {name}…", flush=True)
        results[name] = scenario(size)
    results["targets"] = check_targets(results)
    return results


def print_report(results: dict) -> None:
    m = results["machine"]
    print(f"\nmachine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Python {m['python']}")
    if "overhead" in results:
        print("\noverhead (tiny non-streaming jobs)")
        header = f"  {'route':<14}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>10}{'vs direct':>11}"
        print(header + "   CPU µs per request")
        for key, r in results["overhead"].items():
            direct = results["overhead"][f"direct@{key.split('@')[1]}"]
            cpu = ", ".join(
                f"{k.split('_')[0]} {v:.0f}" for k, v in r.items() if k.endswith("_cpu_us_per_request")
            )
            print(
                f"  {key:<14}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['per_second']:>10.0f}"
                f"{r['per_second'] / direct['per_second']:>10.2f}x   {cpu}"
            )
    if "journal" in results:
        j = results["journal"]
        print(
            f"\njob journal (tiny jobs, c=32, in turns): {j['jobs_per_second_with']:.0f} jobs/s with it,"
            f" {j['jobs_per_second_without']:.0f} without ({j['throughput_ratio']:.3f}x); hub CPU per job"
            f" {j['hub_cpu_us_per_job_with']:.0f} µs with, {j['hub_cpu_us_per_job_without']:.0f} µs without"
            f" ({j['hub_cpu_ratio']:.3f}x); the same two hubs without it:"
            f" {j['control_throughput_ratio']:.3f}x; the journal's thread:"
            f" {j['journal_thread_cpu_us_per_job']:.1f} µs of CPU per job"
        )
        if (pg := j.get("postgres")) is not None:
            print(
                f"  in PostgreSQL (JOURNAL_URL): {pg['throughput_ratio']:.3f}x the jobs/s, hub CPU per job"
                f" {pg['hub_cpu_ratio']:.3f}x, the journal's thread"
                f" {pg['journal_thread_cpu_us_per_job']:.1f} µs of CPU per job ({pg['journal']})"
            )
    if "streaming" in results:
        print("\nstreaming relay (concurrent streams)")
        print(
            f"  {'route':<12}{'chunks/s':>10}{'TTFT p50':>10}{'delay p50':>11}{'delay p99':>11}{'hub CPU':>9}"
        )
        for key, r in results["streaming"].items():
            cpu = f"{r['hub_cpu_percent']:.0f}%" if "hub_cpu_percent" in r else "-"
            print(
                f"  {key:<12}{r['chunks_per_second']:>10.0f}{r['ttft_p50_ms']:>9.1f}m"
                f"{r['delay_p50_ms']:>10.2f}m{r['delay_p99_ms']:>10.2f}m{cpu:>9}"
            )
    if "dialects" in results:
        print("\nthe same streams in each API, at the top rate: tokens/s straight, and through the hub")
        print(f"  {'route':<22}{'direct':>9}{'hub':>9}{'ratio':>8}{'hub µs/token':>14}{'errors':>8}")
        for route, r in results["dialects"].items():
            print(
                f"  {route:<22}{r['direct_tokens_per_second']:>9}{r['hub_tokens_per_second']:>9}"
                f"{r['ratio']:>8.3f}{r['hub_cpu_us_per_token']:>14.2f}{r['errors']:>8}"
            )
    if "registry" in results:
        print("\nregistry scale")
        for key, r in results["registry"].items():
            print(
                f"  {key:<12} heartbeats/s {r['heartbeats_per_second_known']:>8.0f}"
                f"  GET /nodes {r['get_nodes_ms']:>7.1f} ms  routing {r['routing_decision_us']:>7.1f} µs"
                f"  hub RSS {r['hub_rss_mb']:>6.1f} MB"
            )
    if "footprint" in results:
        f = results["footprint"]
        t = f["ollama_top"]
        print(
            f"\nfootprint: hubd {f['hubd_rss_mb']} MB, noded {f['noded_rss_mb']} MB idle; "
            f"ollama-top watching {t['nodes']} nodes at {t['interval_s']} s: "
            f"{t['cpu_percent']}% CPU, {t['rss_mb_peak']} MB"
        )
    if "hostile" in results:
        print("\nhostile (what one caller or node takes from the hub)")
        for attack, figures in results["hostile"].items():
            print(f"  {attack:<16}" + ", ".join(f"{k} {v}" for k, v in figures.items()))
    if "scheduling" in results:
        s = results["scheduling"]
        print(
            f"\nscheduling (a seeded trace; the fleet's capacity is {s['capacity_jobs_per_second']} jobs/s)"
        )
        print(
            f"  {'load / policy':<20}{'done/s':>8}{'p50 s':>7}{'p95 s':>7}{'p99 s':>7}"
            f"{'TTFT50':>8}{'TTFT99':>8}{'loads':>7}{'evict':>7}{'errors':>8}"
        )
        for load in (key for key in s if key.endswith("%")):
            bound = s[load]["lower_bound"]
            print(
                f"  {load + ' lower bound':<20}{'':>8}{bound['latency_p50_s']:>7}{bound['latency_p95_s']:>7}"
                f"{bound['latency_p99_s']:>7}"
            )
            for policy in POLICIES:
                r = s[load][policy]
                print(
                    f"  {load + ' ' + policy:<20}{r['completed_per_second']:>8}{r['latency_p50_s']:>7}"
                    f"{r['latency_p95_s']:>7}{r['latency_p99_s']:>7}{r['ttft_p50_s']:>8}{r['ttft_p99_s']:>8}"
                    f"{r['loads']:>7}{r['evictions']:>7}{r['errors']:>8}"
                )
    if "prefix" in results:
        print_prefix(results["prefix"])
    if "hubs" in results:
        print_hubs(results["hubs"])
    if "real_model" in results:
        r = results["real_model"]
        if "skipped" in r:
            print(f"\nreal model: skipped ({r['skipped']})")
        else:
            direct, hub = r["direct"], r["hub"]
            print(
                f"\nreal model (SmolLM2-135M, llama-cpp-python, CPU): {direct['tokens_per_second']} tokens/s"
                f" direct, {hub['tokens_per_second']} through the hub ({r['throughput_ratio']}x); time to"
                f" first token {direct['ttft_ms']} ms direct, +{r['added_ttft_ms']} ms through the hub"
            )
    print("\ntargets")
    for target in results["targets"]:
        mark = "met   " if target["met"] else "MISSED"
        print(f"  {mark} {target['name']}: {target['measured']} (target {target['target']})")


def print_hubs(r: dict) -> None:
    if "skipped" in r:
        print(f"\ntwo hubs: skipped ({r['skipped']})")
        return
    print(
        f"\ntwo hubs behind haproxy, 3 nodes of {r['slots_per_node']} slots, {r['seconds']} s;"
        f" one hub killed at {r['hub_killed_at_s']} s and started again"
    )
    print(
        f"  streamed jobs: {r['streams_served']} served whole, {r['streams_cut']} cut mid-answer by the death"
        f" ({'; '.join(r['stream_cut_errors']) or '-'}), {r['streams_refused']} refused before a byte"
        f" ({'; '.join(r['refused_errors']) or '-'}); begun while a hub was down: "
        f"{r['streams_begun_while_a_hub_was_down']}, {r['of_those_served']} served"
    )
    print(
        f"  async jobs: {r['async_accepted']} accepted, {r['async_done']} done, {r['async_restarted']} done"
        f" after a takeover, {r['async_lost']} lost"
    )
    print(
        f"  most requests Ollama held at once, per node: {r['most_held_per_node']}"
        f" (slots {r['slots_per_node']}); node_full refusals per node: {r['node_full_refusals']}"
        f" ({r['node_full_refusals_per_job']} a job)"
    )


def print_prefix(results: dict) -> None:
    for workload, r in results.items():
        print(
            f"\nprefix, {workload}: {r['requests']} requests in {r['conversations']} conversations; the"
            f" fleet's capacity is {r['capacity_jobs_per_second_cold']} jobs/s if every prompt is processed"
            + (
                f"; {r['prompt_tokens_new']} prompt tokens no cache could save"
                if "prompt_tokens_new" in r
                else ""
            )
        )
        print(
            f"  {'policy':<20}{'done/s':>8}{'TTFT50':>8}{'TTFT99':>8}{'p50 s':>7}{'p99 s':>7}"
            f"{'prompt tokens processed':>26}{'errors':>8}"
        )
        for policy in PREFIX_POLICIES:
            if (p := r.get(policy)) is None:
                continue
            processed = f"{p['prompt_tokens_processed']} of {p['prompt_tokens']}"
            print(
                f"  {policy:<20}{p['completed_per_second']:>8}{p['ttft_p50_s']:>8}{p['ttft_p99_s']:>8}"
                f"{p['latency_p50_s']:>7}{p['latency_p99_s']:>7}{processed:>26}{p['errors']:>8}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny run that only checks the benchmarks work"
    )
    parser.add_argument(
        "--only",
        nargs="*",
        help="overhead, journal, streaming, registry, footprint, hostile, scheduling, prefix, hubs,"
        " real_model",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    results = run(SMOKE if args.smoke else Size(), set(args.only) if args.only else None)
    print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if not args.smoke:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{results['when'].replace(':', '')}.json"
        path.write_text(json.dumps(results, indent=2) + "\n")
        if not args.only:  # latest.json is always a complete run
            (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
