"""The hub's HTTP routes, one module per dialect or route family: the seed's `/jobs` (jobs) and `/nodes`
(nodes), Ollama's API (ollama), OpenAI's (openai), Anthropic's (anthropic), model management (models),
`/stats` and `/metrics` (stats), `/openapi.json` (openapi) and the dashboard (dashboard). Thin: parse the
request, call the room that does the work, answer.

May import: every other room of the hub (jobs, fleet, routing, guard, ops), the core modules and `shared`.
Nothing imports it but `hubd.app`.
"""
