"""What a simulated model says: an answer that fits the prompt where one of its words points at it (a chat
title, as Open WebUI asks for, gets a few words), else one chosen by the prompt (the same prompt, the same
answer); each ends at a sentence, as a model's answers do."""

from __future__ import annotations

import re
import zlib

ANSWERS: list[tuple[tuple[str, ...], str]] = [
    (
        ("title", "summar"),
        "A short test conversation.",
    ),
    (
        ("sky", "blue"),
        "The sky looks blue because air molecules scatter short blue wavelengths of sunlight far more"
        " than long red ones, so blue light reaches the eye from every direction. At sunset the light"
        " crosses more air, the blue is scattered away, and the reds and oranges are left.",
    ),
    (
        ("ocean", "sea", "water"),
        "Sea water looks blue mostly because water itself absorbs red light a little, and over metres"
        " of depth that adds up. The sky's reflection helps on the surface, which is why a grey day"
        " makes a grey sea.",
    ),
    (
        ("code", "python", "function", "program"),
        "Start with the smallest piece that runs, and test it with a real input before you build on it. Name"
        " things for what they mean, keep each function to one job, and let errors say what went wrong.",
    ),
    (
        ("gpu", "vram", "model", "ollama", "llama"),
        "A model runs fastest when all of its layers fit in GPU memory, since every token reads every weight."
        " When it does not fit, the layers that spill over run on the CPU and the whole answer slows down.",
    ),
    (
        ("hello", "hi", "hey", "thanks"),
        "Hello! I am a simulated model, standing in for Ollama so the fleet can be tried without a GPU."
        " Ask me anything and I will answer, briefly, at the speed the simulator was told to use.",
    ),
    (
        (),
        "That is a good question. The short answer is that it depends on what you need most, speed, cost or"
        " accuracy, and you rarely get all three. Try the simplest option first and measure it.",
    ),
    (
        (),
        "Here is one way to think about it. Break the problem into the parts you know and the parts you"
        " do not, solve the known ones first, and the unknown ones often turn out smaller than they looked.",
    ),
    (
        (),
        "Several things play a part here. The most important is usually the one that changes most often, so"
        " start by watching that, and leave the rest until the numbers say they matter.",
    ),
]


def answer_for(prompt: str) -> list[str]:
    """The words of the answer to `prompt`, each with the space before it (the first has none)."""
    said = re.findall(r"[a-z]+", prompt.lower())
    fitting = [text for keys, text in ANSWERS if any(w.startswith(key) for key in keys for w in said)]
    if fitting:
        text = fitting[0]
    else:
        general = [text for words, text in ANSWERS if not words]
        text = general[zlib.crc32(prompt.encode()) % len(general)]
    words = text.split()
    return [words[0], *(" " + word for word in words[1:])]
