"""`ollama-sim`: a stand-in for Ollama for demos, tests and benchmarks."""

from __future__ import annotations

import argparse
import logging

from ollama_connector.shared.daemon import run, serve_until_signalled
from ollama_connector.shared.logs import setup_logging
from ollama_connector.sim.app import create_app
from ollama_connector.sim.behaviour import Behaviour

DEFAULT_MODELS = "llama3,mistral,qwen2.5:7b,nomic-embed-text"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ollama-sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=11434, help="port to listen on (default: 11434)")
    parser.add_argument(
        "--models", default=DEFAULT_MODELS, help=f"comma-separated models (default: {DEFAULT_MODELS})"
    )
    parser.add_argument(
        "--tokens-per-second", type=float, default=50.0, help="0 for as fast as possible (default: 50)"
    )
    parser.add_argument(
        "--tokens", type=int, default=24, help="tokens per answer without num_predict (default: 24)"
    )
    parser.add_argument("--load-delay", type=float, default=0.0, help="seconds to load a model (default: 0)")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of requests answered 500")
    parser.add_argument("--hang-rate", type=float, default=0.0, help="share of requests that never answer")
    parser.add_argument("--die-rate", type=float, default=0.0, help="share of streams cut off halfway")
    parser.add_argument("--seed", type=int, default=None, help="random seed for the failure draws")
    parser.add_argument("--version", dest="ollama_version", default="0.33.0", help="version to report")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    for name in ("fail_rate", "hang_rate", "die_rate"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            parser.error(f"--{name.replace('_', '-')} must be between 0 and 1")
    if args.fail_rate + args.hang_rate + args.die_rate > 1.0:
        parser.error("--fail-rate, --hang-rate and --die-rate must add up to at most 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.log_level)
    behaviour = Behaviour(
        tokens_per_second=args.tokens_per_second,
        default_tokens=args.tokens,
        load_delay=args.load_delay,
        fail_rate=args.fail_rate,
        hang_rate=args.hang_rate,
        die_rate=args.die_rate,
        seed=args.seed,
    )
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    app = create_app(models, behaviour, version=args.ollama_version)
    logging.getLogger("ollama-sim").info(
        "simulating Ollama %s with %s", args.ollama_version, ", ".join(models)
    )
    run(
        serve_until_signalled(app, [args.host], args.port, name="ollama-sim", drain_timeout=5.0),
        program="ollama-sim",
        listen_settings="--host and --port",
    )


if __name__ == "__main__":
    main()
