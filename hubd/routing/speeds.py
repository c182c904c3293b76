"""What the hub learns of each node's speed, per model, from the jobs it runs there.

- how long a job holds a slot (wall time, without the load), for the wait a busy model means;
- generation speed, from the final chunk's `eval_count / eval_duration` (shown to operators);
- load speed in seconds per GB, from `load_duration` when the job had to load its model.
Each is an exponentially weighted mean, so a node that slows down is noticed within a few jobs. Before a
figure exists the policy falls back on the model's figure elsewhere in the fleet, then on defaults.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace

from ollama_connector.hubd.routing.node import Ewma, ModelSpeed, NodeRecord, Ticket
from ollama_connector.hubd.routing.prefixes import BLOCK_TOKENS
from ollama_connector.shared import sse

DEFAULT_JOB_SECONDS = 5.0  # a job's time before any job of the model has been measured
DEFAULT_LOAD_SECONDS_PER_GB = 1.0  # a load's time per GB before any load has been measured
DEFAULT_LOAD_SECONDS = 5.0  # a load's time when the model's size is unknown too
DEFAULT_FIRST_BYTE_SECONDS = 5.0  # from a job's start to its first byte, before one is measured
DEFAULT_PREFILL_TOKENS_PER_SECOND = 1000.0  # prompt processing, before any is measured (a modest GPU)
MAX_PREFILL_TOKENS_PER_SECOND = 1e6  # past any GPU's prefill: a figure above it is not believed
MAX_PARSED = 1 << 20  # a longer non-streamed answer is not parsed for its figures
MAX_TOKENS_PER_SECOND = 20_000.0  # above any real model's generation: a figure past it is not believed
CLOCK_SLACK = 0.5  # seconds a node's own measure of a generation may exceed the hub's, for clock skew
LOAD_SEEN = 0.05  # seconds of load_duration above which a job counts as having loaded its model


@dataclass(slots=True)
class Timings:
    """What an Ollama final chunk says of the job, in seconds."""

    load: float | None = None
    eval_count: int | None = None
    eval_seconds: float | None = None
    prompt_count: int | None = None
    prompt_seconds: float | None = None  # prompt_eval_duration: the prompt tokens processed now, not cached
    cached: int | None = None  # prompt tokens read from the cache, where the answer says (OpenAI's usage)


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def timings_of(final: bytes | None) -> Timings:
    """The timing fields of Ollama's final chunk (or whole non-streamed answer), or the token counts of a
    `usage` (OpenAI's, Anthropic's, the Responses API's: in the answer, or the last events of its stream);
    empty for anything else."""
    if not final or len(final) > MAX_PARSED:
        return Timings()
    if b'"usage"' in final:
        return _usage(final)
    final = final.rstrip()
    final = final[final.rfind(b"\n") + 1 :]  # the last line of a block of several
    if b'"eval_count"' not in final and b'"load_duration"' not in final:
        return Timings()
    try:
        chunk = json.loads(final)
    except ValueError:
        return Timings()
    if not isinstance(chunk, dict):
        return Timings()

    def seconds(name: str) -> float | None:
        value = chunk.get(name)
        return (
            value / 1e9
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
            else None
        )

    return Timings(
        load=seconds("load_duration"),
        eval_count=_count(chunk.get("eval_count")),
        eval_seconds=seconds("eval_duration"),
        prompt_count=_count(chunk.get("prompt_eval_count")),
        prompt_seconds=seconds("prompt_eval_duration"),
    )


def _usage(final: bytes) -> Timings:
    events = sse.payloads(final) or [final.strip()]  # an event stream's end, or a whole JSON answer
    for text in reversed(events):
        if b'"usage"' not in text:
            continue
        try:
            answer = json.loads(text)
            usage = answer.get("usage") or answer.get("response", {}).get("usage")  # Responses: its end event
        except (ValueError, AttributeError):
            return Timings()
        if isinstance(usage, dict):  # OpenAI's names, or Anthropic's and the Responses API's
            details = usage.get("prompt_tokens_details", usage.get("input_tokens_details"))
            return Timings(
                eval_count=_count(usage.get("completion_tokens", usage.get("output_tokens"))),
                prompt_count=_count(usage.get("prompt_tokens", usage.get("input_tokens"))),
                cached=_count(details.get("cached_tokens")) if isinstance(details, dict) else None,
            )
    return Timings()


class FleetSpeeds:
    """Figures over the whole fleet, the fallback for a node that has not run a model yet."""

    def __init__(self) -> None:
        self.job_seconds: dict[str, Ewma] = {}  # by model
        self.tokens_per_second: dict[str, Ewma] = {}  # by model
        self.first_byte_seconds: dict[str, Ewma] = {}  # by model
        self.prefill_rate: dict[str, Ewma] = {}  # by model: prompt tokens a second, when not cached
        self.prefill_seconds: dict[str, Ewma] = {}  # by model: a job's time on its prompt
        self.others_running: dict[str, Ewma] = {}  # by model: jobs a job shared its node with, when it began
        self.load_seconds_per_gb = Ewma()

    def prefill(self, node: NodeRecord, key: str) -> tuple[float, float]:
        """The model's prompt speed there (tokens a second: the node's, else the fleet's, else the default),
        and the share of its jobs' time spent on their prompts."""
        speed, fleet = node.speeds.get(key), self.prefill_seconds.get(key, Ewma())
        if speed is not None and speed.prefill_rate.samples:
            rate = speed.prefill_rate.value
        else:
            rate = self.prefill_rate.get(key, Ewma()).get(DEFAULT_PREFILL_TOKENS_PER_SECOND)
        # The share of a job's time its prompt takes, over the fleet, as job times are the fleet's (scaled).
        return rate, min(0.9, fleet.get(0.0) / max(self.job(key), 1e-6))

    def first_byte(self, node: NodeRecord, key: str) -> float:
        """How long a job of the model takes to its first byte there (no load), as learned: the node's
        figure, else the fleet's, else DEFAULT_FIRST_BYTE_SECONDS."""
        if (speed := node.speeds.get(key)) is not None and speed.first_byte_seconds.samples:
            return speed.first_byte_seconds.value
        fleet = self.first_byte_seconds.get(key)
        return fleet.value if fleet is not None and fleet.samples else DEFAULT_FIRST_BYTE_SECONDS

    def sharing(self, key: str) -> float:
        """How many other jobs the model's jobs shared their node with, on average: what job_seconds was
        learned at."""
        return self.others_running.get(key, Ewma()).get(0.0)

    def job(self, key: str) -> float:
        """The model's mean job time; before one is measured, the mean over the models that are."""
        mean = self.job_seconds.get(key)
        if mean is not None and mean.samples:
            return mean.value
        if self.job_seconds:
            return sum(m.value for m in self.job_seconds.values()) / len(self.job_seconds)
        return DEFAULT_JOB_SECONDS

    def learn(self, node: NodeRecord, ticket: Ticket, timings: Timings) -> None:
        """A job ended well: what it took there. Its load (the final chunk's load_duration, or the hub's own
        expectation when the answer has no timings) is learned apart from the time it held a slot."""
        if ticket.key is None:
            return
        held = time.monotonic() - ticket.started
        # What a node reports is bounded by the hub's own clock: no load, and no generation, takes longer than
        # the job held its slot here, and no figure outruns MAX_TOKENS_PER_SECOND (a node cannot draw the
        # fleet's traffic, nor fill the views, with 10^21 tokens a second).
        load = None if timings.load is None else min(timings.load, held)
        prompt = None if timings.prompt_seconds is None else min(timings.prompt_seconds, held)
        timings = replace(timings, load=load, prompt_seconds=prompt)
        loaded = timings.load > LOAD_SEEN if timings.load is not None else ticket.loads
        # A load the hub expected teaches the node's load speed even when it was quick (a small model, a
        # fast disk): otherwise a fleet whose loads are instant would be priced at the cautious default.
        if (loaded or ticket.loads) and timings.load is not None and (size := node.sizes.get(ticket.key)):
            rate = timings.load / (size / 1e9)
            node.load_rate.add(rate)
            self.load_seconds_per_gb.add(rate)
        speed = node.speeds.get(ticket.key)
        if speed is None:
            speed = node.speeds[ticket.key] = ModelSpeed()
        if timings.load is not None or not loaded:  # the slot's time is known apart from any load
            busy = max(0.0, held - (timings.load or 0.0))
            speed.job_seconds.add(busy)
            self.job_seconds.setdefault(ticket.key, Ewma()).add(busy)
            self.others_running.setdefault(ticket.key, Ewma()).add(ticket.others)
            if ticket.first_byte is not None:
                first = max(0.0, ticket.first_byte - ticket.started - (timings.load or 0.0))
                speed.first_byte_seconds.add(first)
                self.first_byte_seconds.setdefault(ticket.key, Ewma()).add(first)
        if timings.eval_count and timings.eval_seconds and timings.eval_seconds <= held + CLOCK_SLACK:
            rate = timings.eval_count / timings.eval_seconds
            if rate <= MAX_TOKENS_PER_SECOND:
                speed.tokens_per_second.add(rate)
                self.tokens_per_second.setdefault(ticket.key, Ewma()).add(rate)
        if timings.prompt_count:
            self._learn_prompt(node, speed, ticket, timings.prompt_count, timings)

    def _learn_prompt(
        self, node: NodeRecord, speed: ModelSpeed, ticket: Ticket, count: int, timings: Timings
    ) -> None:
        """Its prompt's time, its cold prompt speed (from a prompt the node was not expected to have
        cached), and from those how much came from the cache (reference §9: prompt_eval_duration counts
        only the tokens processed now), which corrects the node's predicted cache."""
        assert ticket.key is not None
        cached, seconds = timings.cached, timings.prompt_seconds
        if seconds is not None:
            self.prefill_seconds.setdefault(ticket.key, Ewma()).add(seconds)
            cold = not ticket.predicted and count >= BLOCK_TOKENS and seconds > 0
            if cold and (rate := count / seconds) <= MAX_PREFILL_TOKENS_PER_SECOND:
                speed.prefill_rate.add(rate)
                self.prefill_rate.setdefault(ticket.key, Ewma()).add(rate)
            if cached is None and speed.prefill_rate.samples:
                cached = max(0, round(count - seconds * speed.prefill_rate.value))
        if ticket.prompt is not None:
            node.prompts.learn(ticket.predicted, ticket.age, cached, count)

    def forget(self, keys: set[str]) -> None:
        """Drop the models no node lists any more (the table stays bounded by what the fleet has)."""
        tables = (self.job_seconds, self.tokens_per_second, self.first_byte_seconds, self.prefill_rate)
        for table in (*tables, self.others_running, self.prefill_seconds):
            for key in [k for k in table if k not in keys]:
                del table[key]
