"""The two workloads of the `prefix` scenario, built ahead of the run so every policy gets the same one.

- `mooncake`: a replay of `bench/traces/mooncake-conversation.jsonl` (an hour of a production chat
  service). Whole conversations are kept (requests grouped by their second block id, the first after the
  prefix every request shares) and one group in `keep_one_in` is taken; the hour is compressed into the run's
  seconds and lengths are divided by LENGTH_SCALE, so a 512-token block becomes 64 tokens of a fixed text
  (the same id, the same text). Who shares what with whom, and in which order, is the trace's.
- `synthetic`: 8 system prompts of 500 to 4,000 tokens, chosen by Zipf-like popularity, each opening
  conversations of 2 to 6 turns without a session id, whose history (the answers too) grows each turn.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

TRACE = Path(__file__).resolve().parent / "traces" / "mooncake-conversation.jsonl"  # see traces/README.md
LENGTH_SCALE = 8  # the trace's token counts are divided by this
BLOCK_TOKENS = 512 // LENGTH_SCALE
CHARS_PER_TOKEN = 4  # as the simulator counts them
WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "that",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "it",
    "this",
    "be",
    "are",
    "was",
    "an",
    "or",
    "which",
    "data",
]


@dataclass
class Conversation:
    """Turns sent one after the other (each waits for the answer before it); `prompts` for /api/generate
    replays (each a whole prompt), or `questions` for chats (the answers join the history)."""

    at: float  # seconds after the start
    tokens: list[int]  # each turn's answer length (num_predict)
    prompts: list[str] = field(default_factory=list)
    system: str = ""
    questions: list[str] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)  # seconds between an answer and the next turn

    @property
    def turns(self) -> int:
        return len(self.tokens)


def text(seed: int, tokens: int) -> str:
    """A fixed text of that many tokens for a seed: the same seed, the same text."""
    rng = random.Random(seed)
    words, length = [], 0
    while length < tokens * CHARS_PER_TOKEN:
        words.append(rng.choice(WORDS) + str(rng.randrange(100)))
        length += len(words[-1]) + 1
    return " ".join(words)[: tokens * CHARS_PER_TOKEN]


def mooncake(seconds: float, per_second: float) -> tuple[list[Conversation], dict]:
    """The trace's requests at about `per_second` over `seconds`: whole conversations, replayed in order."""
    rows = [json.loads(line) for line in TRACE.read_text().splitlines() if line.strip()]
    span = rows[-1]["timestamp"] / 1000
    keep = max(1, round(len(rows) / (per_second * seconds)))
    groups: dict[int, list[dict]] = {}
    for row in rows:
        ids = row["hash_ids"]
        group = ids[1] if len(ids) > 1 else -1
        if group % keep == 0:
            groups.setdefault(group, []).append(row)
    blocks: dict[int, str] = {}
    conversations = []
    for chain in groups.values():
        prompts = []
        for row in chain:
            body = "".join(blocks.setdefault(b, text(b, BLOCK_TOKENS)) for b in row["hash_ids"])
            prompts.append(body[: max(1, row["input_length"] // LENGTH_SCALE) * CHARS_PER_TOKEN])
        times = [row["timestamp"] / 1000 * seconds / span for row in chain]
        conversations.append(
            Conversation(
                at=times[0],
                tokens=[max(1, row["output_length"] // LENGTH_SCALE) for row in chain],
                prompts=prompts,
                gaps=[max(0.0, later - earlier) for earlier, later in itertools.pairwise(times)],
            )
        )
    conversations.sort(key=lambda c: c.at)
    requests = sum(c.turns for c in conversations)
    # What no routing can save: each prompt's tokens past the longest start it shares with an earlier one.
    kept = sorted((row for chain in groups.values() for row in chain), key=lambda row: row["timestamp"])
    starts: set[tuple[int, ...]] = set()
    new = 0
    for row in kept:
        ids, tokens = tuple(row["hash_ids"]), row["input_length"] // LENGTH_SCALE
        shared = next((k for k in range(len(ids), 0, -1) if ids[:k] in starts), 0)
        new += max(0, tokens - shared * BLOCK_TOKENS)
        starts.update(ids[:k] for k in range(1, len(ids) + 1))
    shape = {
        "requests": requests,
        "conversations": len(conversations),
        "keep_one_in": keep,
        "length_scale": LENGTH_SCALE,
        "prompt_tokens_mean": round(sum(len(p) for c in conversations for p in c.prompts) / 4 / requests),
        "prompt_tokens_new": new,  # at the least, with a perfect cache of everything ever seen
    }
    return conversations, shape


SYSTEM_TOKENS = [500 * (n + 1) for n in range(8)]  # 500 to 4,000


def synthetic(seconds: float, per_second: float, seed: int = 11) -> tuple[list[Conversation], dict]:
    """Conversations arriving at random (Poisson) so that about `per_second` requests come a second."""
    rng = random.Random(seed)
    systems = [text(10_000 + n, tokens) for n, tokens in enumerate(SYSTEM_TOKENS)]
    weights = [1 / (rank + 1) ** 1.1 for rank in range(len(systems))]
    rng.shuffle(weights)  # popularity apart from length
    conversations, now = [], 0.0
    while True:
        now += rng.expovariate(per_second / 4)  # 4 turns on average
        if now >= seconds:
            break
        turns = rng.randint(2, 6)
        conversations.append(
            Conversation(
                at=now,
                tokens=[max(4, min(200, round(rng.lognormvariate(math.log(30), 0.6)))) for _ in range(turns)],
                system=rng.choices(systems, weights)[0],
                questions=[text(rng.randrange(1 << 30), rng.randint(20, 120)) for _ in range(turns)],
                gaps=[rng.expovariate(1.0) for _ in range(turns - 1)],
            )
        )
    shape = {
        "requests": sum(c.turns for c in conversations),
        "conversations": len(conversations),
        "system_prompt_tokens": SYSTEM_TOKENS,
    }
    return conversations, shape
