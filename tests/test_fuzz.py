"""Fuzzing: schemathesis against the hub's OpenAPI document, hypothesis against its Ollama and OpenAI routes,
and hypothesis properties of routing. Seeded and bounded, so a run takes seconds and repeats itself."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error, positive_data_acceptance

from ollama_connector.hubd.routing.placement import Placement
from ollama_connector.hubd.routing.policy import Ask
from ollama_connector.hubd.routing.registry import Registry
from ollama_connector.shared.modelnames import canonical
from ollama_connector.shared.wire import Capacity, Heartbeat, Load, LoadedModel
from tests.conftest import Processes

FUZZ = settings(
    max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None
)
# A 503 is documented (the model is known, but no node can run it now); no other 5xx is.
DOCUMENTED_5XX = {503}


@pytest.fixture(scope="module")
def hub_url(tmp_path_factory) -> Iterator[str]:
    """A real hub, agent and simulator, as processes: schemathesis calls them from this (synchronous) test."""
    fleet = Processes(logs=Path(tmp_path_factory.mktemp("fuzz")))
    try:
        ollama, _ = fleet.sim(None, "--models", "llama3,nomic-embed-text")
        hub, _ = fleet.hub(MAX_NODES="40", NODE_REQUEST_TIMEOUT="5")
        fleet.node(hub, ollama, "fuzz-node")
        yield hub
    finally:
        fleet.stop()
        fleet.show_logs()


@pytest.fixture
def hub_schema(hub_url: str):
    return schemathesis.openapi.from_url(hub_url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("hub_schema")


@schema.parametrize()
@FUZZ
def test_the_hub_keeps_its_documented_contract(case):
    response = case.call(timeout=15)
    assert response.status_code < 500 or response.status_code in DOCUMENTED_5XX, response.text
    # Some valid-looking data is refused for what no schema can say (an address that is the hub's own, a
    # name that does not resolve, a full registry); everything else is checked.
    case.validate_response(response, excluded_checks=[not_a_server_error, positive_data_acceptance])


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code


# Valid JSON that is not valid Unicode: lone surrogates, which a hostile run once turned into 500s.
LONE_SURROGATES = ["\ud800", "llama3\ud800", "\udfff\ud800...", "a\udc00b"]
texts = st.text(max_size=30) | st.sampled_from(LONE_SURROGATES)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20,
)
# Thousands of fields nobody reads, beside whatever else the body holds.
wide = st.integers(500, 3000).map(lambda n: {f"field{i}": i for i in range(n)})
bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["llama3", "nomic-embed-text", "nope", *LONE_SURROGATES]) | json_values,
        "prompt": texts | json_values,
        "messages": st.lists(st.fixed_dictionaries({"role": st.text(max_size=8), "content": json_values})),
        "stream": st.booleans() | json_values,
        "options": st.dictionaries(st.sampled_from(["num_predict", "temperature", "seed"]), json_values),
        "keep_alive": st.sampled_from([0, "0", "5m", -1]) | json_values,
        "input": json_values,
        "max_tokens": st.integers(-2, 5) | json_values,
    },
)
ROUTES = [
    "/api/generate",
    "/api/chat",
    "/api/embed",
    "/api/show",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/messages",
    "/v1/audio/transcriptions",
    "/jobs",
]


@FUZZ
@given(
    route=st.sampled_from(ROUTES),
    body=bodies | json_values | st.tuples(bodies, wide).map(lambda pair: {**pair[1], **pair[0]}),
    raw=st.booleans(),
)
def test_ollama_and_openai_routes_never_answer_a_5xx_to_anything(hub_url, route, body, raw):
    payload = json.dumps(body).encode()[:-1] if raw else json.dumps(body).encode()  # raw: cut JSON
    status = post(hub_url + route, payload)
    assert status < 500 or status in DOCUMENTED_5XX


SURROGATE_BODIES = {
    "/api/generate": ({"model": "llama3\ud800", "prompt": "x"}, "model"),
    "/api/chat": (
        {"model": "llama3", "messages": [{"role": "user", "content": "\udfff\ud800"}]},
        "messages.0.content",
    ),
    "/api/embed": ({"model": "nomic-embed-text", "input": "\ud800"}, "input"),
    "/api/show": ({"model": "llama3\ud800"}, "model"),
    "/api/delete": ({"model": "llama3\ud800"}, "model"),
    "/api/copy": ({"source": "llama3\ud800", "destination": "b"}, "source"),
    "/api/pull": ({"model": "llama3\ud800"}, "model"),
    "/v1/chat/completions": (
        {"model": "llama3", "messages": [{"role": "user", "content": "\ud800"}]},
        "content",
    ),
    "/v1/embeddings": ({"model": "nomic-embed-text", "input": ["ok", "\ud800"]}, "input.1"),
    "/v1/messages": ({"model": "llama3\ud800", "max_tokens": 5, "messages": []}, "model"),
    "/v1/responses": ({"model": "llama3", "input": "\ud800"}, "input"),
    "/jobs": ({"model": "llama3", "prompt": "x", "\ud800": 1}, "(a name)"),
}


@pytest.mark.parametrize("route", sorted(SURROGATE_BODIES))
def test_a_lone_surrogate_is_a_400_naming_where_it_is(hub_url, route):
    body, where = SURROGATE_BODIES[route]
    request = urllib.request.Request(
        hub_url + route,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="DELETE" if route == "/api/delete" else "POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=15)
    text = refused.value.read().decode()
    assert refused.value.code == 400 and where in text and "lone surrogate" in text, text


@FUZZ
@given(
    beat=st.fixed_dictionaries(
        {"node_id": st.text(max_size=12), "port": st.integers(-1, 70000)},
        optional={
            "models": st.lists(st.text(max_size=12), max_size=5) | json_values,
            "metadata": st.dictionaries(st.text(max_size=5), json_values, max_size=3) | json_values,
            "address": st.sampled_from(["127.0.0.2", "::1", "x@y", "a/b", "10.0.0.1"]) | st.text(max_size=12),
            "load": st.fixed_dictionaries({"cpu": st.floats(-1, 2), "memory": st.floats(-1, 2)})
            | json_values,
            "status": st.sampled_from(["online", "draining", "gone"]),
        },
    )
)
def test_heartbeats_never_get_a_5xx(hub_url, beat):
    assert post(hub_url + "/nodes/heartbeat", json.dumps(beat).encode()) < 500


def test_after_the_fuzzing_the_hub_still_serves_real_jobs(hub_url):
    body = json.dumps({"model": "llama3", "prompt": "still there?", "stream": False}).encode()
    assert post(hub_url + "/jobs", body) == 200


# Routing properties: the registry alone, with fleets hypothesis makes up.
node = st.fixed_dictionaries(
    {
        "models": st.lists(st.sampled_from(["a", "b:1", "C", "d"]), max_size=3),
        "cpu": st.floats(0, 1),
        "status": st.sampled_from(["online", "draining", "degraded", "offline"]),
        "jobs": st.integers(0, 3),
    }
)


def made_up_fleet(nodes: list[dict]) -> Registry:
    """A registry holding node n0, n1, … with these heartbeat fields each."""
    registry = Registry(ttl=60, remove_after=120, max_failures=1, probe_interval=30)
    for number, fields in enumerate(nodes):
        registry.heartbeat(Heartbeat(node_id=f"n{number}", port=9, **fields), "10.0.0.1")
    return registry


@FUZZ
@given(fleet=st.lists(node, max_size=12), wanted=st.sampled_from(["a", "b:1", "c", "d", "e"]))
def test_routing_offers_only_online_nodes_that_have_the_model(fleet, wanted):
    registry = made_up_fleet(
        [
            {
                "models": spec["models"],
                "load": Load(cpu=spec["cpu"]),
                "status": "draining" if spec["status"] == "draining" else "online",
            }
            for spec in fleet
        ]
    )
    for number, spec in enumerate(fleet):
        record = registry.get(f"n{number}")
        if spec["status"] == "degraded":
            registry.record_failure(record, "made up")
        if spec["status"] == "offline":
            record.last_seen -= 1000
        for _ in range(spec["jobs"]):
            registry.job(record).__enter__()
    offered = list(registry.candidates(wanted))
    assert all(registry.status(r) == "online" for r in offered)
    assert all(canonical(wanted) in r.model_keys for r in offered)
    expected = {
        f"n{i}"
        for i, spec in enumerate(fleet)
        if spec["status"] == "online" and canonical(wanted) in {canonical(m) for m in spec["models"]}
    }
    assert {r.node_id for r in offered} == expected
    ranks = [(r.active_jobs, r.rank) for r in offered]
    assert ranks == sorted(ranks)  # best first: fewest jobs, then the rest of the rank


capacity_node = st.fixed_dictionaries(
    {
        "models": st.lists(st.sampled_from(["a", "b:1", "c", "d"]), min_size=1, max_size=4, unique=True),
        "loaded": st.lists(st.sampled_from(["a", "b:1", "c", "d"]), max_size=3, unique=True),
        "parallel": st.integers(1, 3),
        "max_loaded": st.integers(1, 3),
    }
)


@FUZZ
@given(
    fleet=st.lists(capacity_node, min_size=1, max_size=6),
    jobs=st.lists(st.tuples(st.sampled_from(["a", "b:1", "c"]), st.sampled_from([None, 2048, 8192]))),
)
def test_capacity_routing_never_runs_more_than_num_parallel_jobs_of_a_model_on_a_node(fleet, jobs):
    registry = made_up_fleet(
        [
            {
                "models": spec["models"],
                "capacity": Capacity(num_parallel=spec["parallel"], max_loaded_models=spec["max_loaded"]),
                "loaded": [LoadedModel(name=m) for m in spec["loaded"] if m in spec["models"]],
            }
            for spec in fleet
        ]
    )
    policy = Placement(registry, "capacity", queue_max=10, queue_timeout=1.0).capacity
    for model, num_ctx in jobs:  # every job is held to the end: the fleet only fills up
        option = policy.choose(Ask(canonical(model), num_ctx), set())
        if option is not None and option.node is not None:
            registry.job(option.node, model, num_ctx).__enter__()
    for node in registry.all():
        parallel = node.capacity.num_parallel
        assert all(count <= parallel for count in node.running.values()), (node.node_id, node.running)
