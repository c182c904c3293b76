"""Keeping the hub observable and tidy: Prometheus metrics, counted as the ledger's watcher and read from
every room's state at scrape time (metrics), background upkeep of the registry: offline nodes, removals,
health probes (upkeep), and the registry's snapshot across a restart (snapshot).

May import: jobs, routing, guard, the core modules and `shared`. Only api and app import it.
"""
