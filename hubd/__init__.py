"""`ollama-hubd`, the hub: one endpoint for a fleet of Ollama nodes.

A request's path through it, room by room (each room's `__init__` says what it owns and may import):
`api/` parses a route and answers it; `jobs/` runs the job on nodes with failover and accounts it (the
ledger); `routing/` decides which node, from the registry fed by heartbeats; `fleet/` manages models across
nodes; `guard/` checks keys, rates and bounds on the way in; `ops/` keeps the hub observable and tidy
(metrics, upkeep, the registry's snapshot). `app.py` builds the application, `main.py` runs it,
`settings.py`, `errors.py` and `keys.py` are what every room shares. Lower rooms never import higher ones
(tests/test_layout.py): shared < core < guard < routing < jobs, fleet < ops < api < app.
"""
