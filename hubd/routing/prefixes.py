"""What each node's Ollama holds of a prompt, predicted. Ollama keeps each slot's last prompt in its KV cache
and skips the longest common prefix of the next one (reference §9), but reports no cache events: the hub
remembers what it sent where, and learns from what Ollama reports back.

- A job's prompt, as text in the order the model sees it (system prompt, then each message under its role, or
  the prompt), is cut into BLOCK_CHARS blocks, each hashed with every block before it: equal starts give equal
  chains (`Prompt.of`). The hub keeps hashes, never text.
- Each node remembers, per model, the blocks it was sent lately (`NodePrompts`): an LRU of at most what its
  cache is believed to hold. It forgets a model's blocks when the model leaves the node's loaded list (an
  unload or a restart of its Ollama clears the cache), and all of them when the node leaves the registry.
- A job's match on a node is its run of leading blocks that node remembers; the capacity policy prices the
  rest at the node's prefill rate (hubd.routing.policy).
- After a job, Ollama's prompt_eval_count and prompt_eval_duration (only the tokens processed now) with the
  node's cold prefill rate say how much came from its cache. A predicted hit that did not happen shrinks what
  the node is believed to hold; one that did lets it grow.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

CHARS_PER_TOKEN = 4  # the usual average for English: how the hub counts a prompt's tokens
BLOCK_CHARS = 256  # 64 tokens: the grain of a predicted match
BLOCK_TOKENS = BLOCK_CHARS // CHARS_PER_TOKEN
MAX_BLOCKS = 2048  # of one prompt (512 K characters): past it, a prompt is priced but not remembered
MAX_MESSAGES = 10_000  # messages (or content parts) of one prompt read for its text
MIN_REMEMBERED = 64  # blocks per model a node is believed to hold at least (4 K tokens: its slots' prompts)
DEFAULT_REMEMBERED = 1024  # before any is learned (64 K tokens: a few slots and a host cache)
MAX_REMEMBERED = 4096  # at most (256 K tokens); about 100 bytes each in the hub
HIT_SHARE = 0.5  # a predicted match counts as a hit when at least this share of it came from the cache


@dataclass(frozen=True, slots=True)
class Prompt:
    """A job's prompt as the hub routes on it: the chain of its whole blocks, and its tokens (estimated)."""

    blocks: tuple[int, ...]
    tokens: int

    @classmethod
    def of(cls, body: dict[str, Any], model: str) -> Prompt | None:
        """The prompt of a generate, chat, completion, messages or responses body; None if it has none."""
        text = prompt_text(body)
        if not text:
            return None
        chain, blocks = hash(model), []
        for start in range(0, min(len(text), MAX_BLOCKS * BLOCK_CHARS) - BLOCK_CHARS + 1, BLOCK_CHARS):
            chain = hash((chain, text[start : start + BLOCK_CHARS]))
            blocks.append(chain)
        return cls(tuple(blocks), max(1, len(text) // CHARS_PER_TOKEN))


def prompt_text(body: dict[str, Any]) -> str:
    """The text the model sees, in its order, with the roles (a template's exact markup does not matter: only
    that equal conversations give equal text, and a conversation's next turn extends the text of the last)."""
    parts: list[str] = []
    for name in ("system", "instructions"):
        if text := _content(body.get(name)):
            parts.append(f"\x02system\x03{text}")
    messages = body.get("messages", body.get("input"))
    if isinstance(messages, list):
        for message in messages[:MAX_MESSAGES]:
            if isinstance(message, dict):
                role = message.get("role")
                text = _content(message.get("content")) + _images(message.get("images"))
                parts.append(f"\x02{role if isinstance(role, str) else 'user'}\x03{text}")
    elif isinstance(messages, str):
        parts.append(f"\x02user\x03{messages}")
    if isinstance(prompt := body.get("prompt"), str) and prompt:
        parts.append(f"\x02user\x03{prompt}{_images(body.get('images'))}")
    return "\x01".join(parts)


def _content(content: object) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = []
    for part in content[:MAX_MESSAGES]:
        if isinstance(part, dict):
            text = part.get("text")
            texts.append(text if isinstance(text, str) else f"\x04{hash(str(part)[:4096])}")  # an image
    return " ".join(texts)


def _images(images: object) -> str:
    if not isinstance(images, list):
        return ""
    return "".join(f"\x04{hash(image[:4096])}:{len(image)}" for image in images if isinstance(image, str))


@dataclass(slots=True)
class NodePrompts:
    """The blocks one node was sent lately, per model, and how its predictions fared."""

    models: dict[str, OrderedDict[int, None]] = field(default_factory=dict)
    remembered: int = DEFAULT_REMEMBERED  # blocks per model its cache is believed to hold
    prompt_tokens: int = 0  # of its jobs whose cache use is known (measured, or else predicted)
    cached_tokens: int = 0

    def matched(self, key: str, prompt: Prompt) -> int:
        """Tokens of the prompt the node is expected to have cached: its leading blocks remembered there."""
        held = self.models.get(key)
        if not held:
            return 0
        count = 0
        for block in prompt.blocks:
            if block not in held:
                break
            count += 1
        return count * BLOCK_TOKENS

    def sent(self, key: str, prompt: Prompt) -> tuple[int, int]:
        """The node was given the prompt: its slot holds it from now on. The tokens it was expected to have
        cached before, and how many blocks were sent there since the last of those (the cache held at least
        that many, if the match was real)."""
        matched = self.matched(key, prompt)
        held = self.models.setdefault(key, OrderedDict())
        age = 0
        if matched:
            last = prompt.blocks[matched // BLOCK_TOKENS - 1]
            age = next((n for n, block in enumerate(reversed(held)) if block == last), len(held))
        for block in prompt.blocks:
            held[block] = None
            held.move_to_end(block)
        while len(held) > self.remembered:
            held.popitem(last=False)
        return matched, age

    def fullness(self, key: str) -> float:
        """How full the model's cache there is believed to be (0 to 1)."""
        return len(self.models.get(key, ())) / self.remembered

    def learn(self, predicted: int, age: int, cached: int | None, tokens: int) -> None:
        """A job ended with `predicted` tokens expected from the cache (sent `age` blocks ago), and `cached`
        found there (None: not known, the prediction stands)."""
        self.prompt_tokens += tokens
        self.cached_tokens += min(tokens, predicted if cached is None else cached)
        if cached is None or predicted < BLOCK_TOKENS:
            return
        if cached < predicted * HIT_SHARE:  # gone within `age` blocks: it holds fewer than that
            self.remembered = max(MIN_REMEMBERED, min(self.remembered * 3 // 4, age))
            for held in self.models.values():
                while len(held) > self.remembered:
                    held.popitem(last=False)
        else:
            self.remembered = min(MAX_REMEMBERED, self.remembered + max(1, predicted // BLOCK_TOKENS // 4))

    def forget(self, keys: set[str]) -> None:
        """Models no longer loaded there: their cache went with their runner."""
        for key in keys & self.models.keys():
            del self.models[key]

    def view(self) -> dict:
        return {
            "hit_rate": round(self.cached_tokens / self.prompt_tokens, 3) if self.prompt_tokens else None,
            "tokens_saved": self.cached_tokens,
            "blocks_remembered": sum(len(held) for held in self.models.values()),
            "blocks_believed_held": self.remembered,
        }
