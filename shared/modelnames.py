"""Ollama's model-name rules, so `llama3` finds a node that lists `llama3:latest`.

Grammar `[host/][namespace/]model[:tag]`, with defaults `registry.ollama.ai`, `library` and `latest`;
matching folds case.
"""

from __future__ import annotations

from functools import lru_cache

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"


@lru_cache(maxsize=4096)
def canonical(name: str) -> str:
    """The fully qualified, lower-cased form used as a matching key."""
    name = name.strip()
    tag = DEFAULT_TAG
    colon, slash = name.rfind(":"), name.rfind("/")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :] or DEFAULT_TAG
    parts = name.split("/")
    model = parts[-1]
    namespace = parts[-2] if len(parts) >= 2 else DEFAULT_NAMESPACE
    host = "/".join(parts[:-2]) if len(parts) >= 3 else DEFAULT_HOST
    return f"{host}/{namespace}/{model}:{tag}".lower()


def display(name: str) -> str:
    """Ollama's `DisplayShortest`: default host and namespace dropped, the tag always kept."""
    host, namespace, rest = canonical(name).split("/", 2)
    if host != DEFAULT_HOST:
        return f"{host}/{namespace}/{rest}"
    if namespace != DEFAULT_NAMESPACE:
        return f"{namespace}/{rest}"
    return rest


EMBEDDING_HINTS = ("embed", "minilm", "bge-")


def likely_embedding(name: str) -> bool:
    """Whether a model is, by its name, one that embeds rather than generates (nomic-embed-text, all-minilm,
    bge-m3, mxbai-embed-large, …). Names are all the hub knows of a model without asking a node."""
    model = canonical(name).rsplit("/", 1)[-1]
    return any(hint in model for hint in EMBEDDING_HINTS)
