"""Model management across nodes through Ollama's own routes: which nodes a pull, delete, copy or create goes
to and what the whole came to (manage), transfers that outlive their caller and are shared between callers
(transfers), asking many nodes the same thing at once (fanout), and FLEET_MODELS, the models the hub keeps
on that many nodes (desired).

May import: routing, guard, the core modules and `shared`. Never jobs (a pull is not a job), ops or api.
"""
