"""How the simulator behaves: speed, model loading and injected failures."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Literal

Fault = Literal["fail", "hang", "die", "stall", "error"] | None

_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass
class Behaviour:
    """Knobs for one simulator; tests and the demo change them through POST /_sim/config."""

    tokens_per_second: float = 50.0  # 0 means as fast as the machine allows
    default_tokens: int = 24  # tokens per answer when the request sets no num_predict (exact answers)
    # Answers that vary with the prompt and end at a sentence, within num_predict, as a model's do; False:
    # the same words, exactly default_tokens or num_predict of them (the tests' and the bench's figures).
    natural: bool = False
    load_delay: float = 0.0  # seconds to "load" a model that is not loaded yet
    fail_rate: float = 0.0  # share of requests answered 500
    hang_rate: float = 0.0  # share of requests that never answer
    die_rate: float = 0.0  # share of requests whose connection drops halfway through the answer
    stall_rate: float = 0.0  # share of requests that go silent halfway through the answer, for good
    error_rate: float = 0.0  # share of streams that end halfway with an in-stream error (then [DONE], later)
    flood_rate: float = 0.0  # share of generations answered with one endless line (sim.app.floods)
    lost_pull_rate: float = 0.0  # share of pulls that report success but leave no model behind
    pull_seconds: float = 0.0  # how long a pull's download takes
    pull_fail_rate: float = 0.0  # share of pulls that fail half-way, with an error line
    cloud_disabled: float = 0.0  # 1: OLLAMA_NO_CLOUD is set (GET /api/status says so)
    # Ollama's scheduler (reference §8): OLLAMA_NUM_PARALLEL, _MAX_LOADED_MODELS, VRAM, _MAX_QUEUE,
    # OLLAMA_KEEP_ALIVE, and how long a load takes (load_delay plus this much per GB of model).
    num_parallel: int = 1
    max_loaded_models: int = 3
    vram_gb: float = 0.0  # 0: no limit but the runner count (a CPU node)
    max_queue: int = 512
    keep_alive: float = 300.0
    load_seconds_per_gb: float = 0.0
    # Prompt processing (reference §9), as a mid-range GPU does an 8B model: tokens a second before the first
    # token (only those not in the slot's cache), the host prompt cache's size in tokens (Ollama's 8 GiB
    # default holds about 100,000 for a mid-size model), and how fast a prefix comes back from it. With
    # tokens_per_second 0 (as fast as the machine allows) prompts cost nothing either.
    # What runs at once shares the node's compute: its total grows as the square root of the streams.
    shared_compute: bool = True
    prefill_tokens_per_second: float = 2500.0
    prompt_cache_tokens: int = 100_000
    restore_tokens_per_second: float = 50_000.0
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        self.rng.seed(self.seed)

    def draw_fault(self) -> Fault:
        roll = self.rng.random()
        faults = (
            ("fail", self.fail_rate),
            ("hang", self.hang_rate),
            ("die", self.die_rate),
            ("stall", self.stall_rate),
            ("error", self.error_rate),
        )
        for fault, rate in faults:
            if roll < rate:
                return fault
            roll -= rate
        return None

    # What GET and POST /_sim/config read and change.
    KNOBS = (
        "tokens_per_second",
        "default_tokens",
        "natural",
        "load_delay",
        "fail_rate",
        "hang_rate",
        "die_rate",
        "stall_rate",
        "error_rate",
        "flood_rate",
        "lost_pull_rate",
        "pull_seconds",
        "pull_fail_rate",
        "cloud_disabled",
        "num_parallel",
        "max_loaded_models",
        "vram_gb",
        "max_queue",
        "keep_alive",
        "load_seconds_per_gb",
        "shared_compute",
        "prefill_tokens_per_second",
        "prompt_cache_tokens",
        "restore_tokens_per_second",
    )

    def knobs(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self.KNOBS}

    def update(self, changes: dict) -> None:
        for name, value in changes.items():
            if name not in self.KNOBS:
                raise ValueError(f"unknown setting {name!r}")
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative number")
            setattr(self, name, type(getattr(self, name))(value))


def parse_keep_alive(value: object, default: float | None = None) -> float | None:
    """Ollama's keep_alive in seconds: a number of seconds, or a Go duration such as "5m" or "-1"."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise ValueError(f"json: cannot unmarshal bool into Go value of type time.Duration: {value}")
    if isinstance(value, int | float):
        return float("inf") if value < 0 else float(value)
    if isinstance(value, str):
        text = value.strip()
        if text in {"0", ""}:
            return 0.0
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f'time: missing unit in duration "{text}"')
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
        return float("inf") if seconds < 0 else seconds
    raise ValueError(f"json: cannot unmarshal {type(value).__name__} into Go value of type time.Duration")
