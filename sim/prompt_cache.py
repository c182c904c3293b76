"""The prompt cache of a loaded model, as llama.cpp's llama-server keeps it under Ollama (reference §9).

Each slot keeps the tokens of its last request; a new request goes to the free slot whose cached tokens
share the longest prefix with its prompt (when that is at least SIMILARITY of the prompt), else to the least
recently used one, and skips that prefix, in whole blocks. A slot given to another prompt leaves its tokens
in a host cache (the prompt_cache_tokens knob, the oldest going first), from which a later prompt restores a
longer prefix at a cost. Unloading the model drops both (the runner and its cache go together).

Tokens are one per CHARS_PER_TOKEN characters of the text the model would see, so equal text starts give
equal token starts.
"""

from __future__ import annotations

import time
import zlib
from collections import deque
from dataclasses import dataclass, field

CHARS_PER_TOKEN = 4
BLOCK = 16  # tokens: a cached prefix is reused in whole blocks
SIMILARITY = 0.10  # llama-server's --slot-prompt-similarity
IMAGE_TOKENS = 576  # an image's fixed cost in the prompt (a vision projector's patches: LLaVA's 576)


def content_text(content: object, images: object = None) -> str:
    """The text a message's content puts in the prompt: a string, or its parts (text; each image a fixed
    run of tokens, equal for equal images), and Ollama's `images` list."""
    parts: list[str] = []
    if isinstance(content, str):
        parts.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") in ("image", "image_url", "input_image"):
                parts.append(_image(str(part)))
    if isinstance(images, list):
        parts += [_image(str(image)) for image in images]
    return " ".join(parts)


def _image(data: str) -> str:
    mark = f"<img {zlib.crc32(data.encode()):08x}>"
    size = IMAGE_TOKENS * CHARS_PER_TOKEN
    return (mark * (size // len(mark) + 1))[:size]


def rendered(turns: list[tuple[str, str]]) -> str:
    """What the model sees, as a chat template renders it: each turn under its role, then the assistant's
    turn opened. A slot caches this and the answer after it, so the next turn, which repeats the answer,
    matches the cache past it."""
    return "".join(f"<|{role}|>\n{text}\n" for role, text in turns if text) + "<|assistant|>\n"


def chat_turns(messages: object) -> list[tuple[str, str]]:
    """The turns of a list of messages (Ollama's, OpenAI's, Anthropic's: a role and a content)."""
    return (
        [
            (str(m.get("role", "user")), content_text(m.get("content"), m.get("images")))
            for m in messages
            if isinstance(m, dict)
        ]
        if isinstance(messages, list)
        else []
    )


def tokens_of(text: str) -> list[int]:
    return [zlib.crc32(text[i : i + CHARS_PER_TOKEN].encode()) for i in range(0, len(text), CHARS_PER_TOKEN)]


def common(a: list[int], b: list[int]) -> int:
    """The length of the common start, by bisection over slices compared in C (a slot may hold 100 K tokens,
    and each request looks at every free slot)."""
    n = min(len(a), len(b))
    if not n or a[0] != b[0]:
        return 0
    if a[:n] == b[:n]:
        return n
    same, differs = 1, n
    while differs - same > 1:
        middle = (same + differs) // 2
        if a[:middle] == b[:middle]:
            same = middle
        else:
            differs = middle
    return same


@dataclass
class Slot:
    cached: list[int] = field(default_factory=list)
    used_at: float = 0.0
    busy: bool = False


@dataclass
class Claim:
    slot: Slot
    reused: int  # tokens of the prompt already in the slot
    restored: int  # tokens brought back from the host cache


class PromptCache:
    def __init__(self, slots: int, host_tokens: int) -> None:
        self.slots = [Slot() for _ in range(max(1, slots))]
        self.host: deque[list[int]] = deque()
        self.host_tokens = host_tokens
        self.held = 0  # tokens in the host cache

    def claim(self, prompt: list[int]) -> Claim:
        free = [slot for slot in self.slots if not slot.busy] or self.slots  # the scheduler bounds the busy
        best = max(free, key=lambda slot: common(slot.cached, prompt))
        if not prompt or common(best.cached, prompt) < SIMILARITY * len(prompt):
            best = min(free, key=lambda slot: slot.used_at)
        reused = _blocks(common(best.cached, prompt), len(prompt))
        if best.cached and reused < len(best.cached):
            self._keep(best.cached)  # what the slot held goes to the host cache
        restored = 0
        if len(prompt) > BLOCK and reused < len(prompt) and self.host:
            entry = max(self.host, key=lambda cached: common(cached, prompt))
            if (found := _blocks(common(entry, prompt), len(prompt))) > reused:
                restored = found - reused
                self.host.remove(entry)
                self.held -= len(entry)
        best.busy = True
        return Claim(best, reused, restored)

    def release(self, claim: Claim, tokens: list[int]) -> None:
        claim.slot.cached, claim.slot.used_at, claim.slot.busy = tokens, time.monotonic(), False

    def _keep(self, tokens: list[int]) -> None:
        if len(tokens) <= BLOCK:
            return  # nothing of it could be restored: a restore is in whole blocks
        self.host.append(tokens)
        self.held += len(tokens)
        while self.host and self.held > self.host_tokens:
            self.held -= len(self.host.popleft())


def _blocks(tokens: int, prompt: int) -> int:
    """Whole blocks, and never the whole prompt: at least its last token is processed (llama.cpp does so)."""
    return min(tokens // BLOCK * BLOCK, max(0, prompt - 1))
