"""`ollama-sim`: a stand-in for Ollama for demos, tests and benchmarks."""

from __future__ import annotations

import argparse
import logging

from ollama_connector.shared.daemon import run, serve_until_signalled
from ollama_connector.shared.logs import setup_logging
from ollama_connector.sim.app import create_app
from ollama_connector.sim.behaviour import Behaviour, parse_keep_alive
from ollama_connector.sim.scheduler import finite

DEFAULT_MODELS = "llama3,mistral,qwen2.5:7b,nomic-embed-text"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ollama-sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=11434, help="port to listen on (default: 11434)")
    parser.add_argument(
        "--models",
        default=DEFAULT_MODELS,
        help=f"comma-separated models, each name or name=size (4.7GB) (default: {DEFAULT_MODELS})",
    )
    parser.add_argument(
        "--tokens-per-second", type=float, default=50.0, help="0 for as fast as possible (default: 50)"
    )
    parser.add_argument(
        "--tokens",
        type=int,
        default=None,
        help="exact answers: this many tokens without num_predict, exactly num_predict with it, the"
        " same words each time (the tests'). Unset: each answer fits its prompt and ends at a"
        " sentence, within num_predict",
    )
    parser.add_argument("--load-delay", type=float, default=0.0, help="seconds to load a model (default: 0)")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of requests answered 500")
    parser.add_argument("--hang-rate", type=float, default=0.0, help="share of requests that never answer")
    parser.add_argument("--die-rate", type=float, default=0.0, help="share of streams cut off halfway")
    parser.add_argument(
        "--stall-rate", type=float, default=0.0, help="share of streams that go silent halfway, for good"
    )
    parser.add_argument(
        "--error-rate",
        type=float,
        default=0.0,
        help="share of streams ending halfway with an in-stream error",
    )
    parser.add_argument(
        "--flood-rate", type=float, default=0.0, help="share of generations answered with one endless line"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed for the failure draws")
    # Ollama's scheduler (reference §8).
    parser.add_argument(
        "--num-parallel", type=int, default=1, help="requests a loaded model serves at once (1)"
    )
    parser.add_argument("--max-loaded-models", type=int, default=3, help="models loaded at once (3)")
    parser.add_argument("--vram-gb", type=float, default=0.0, help="GPU memory for models; 0: no limit (0)")
    parser.add_argument(
        "--max-queue", type=int, default=512, help="requests waiting for a load, then 503 (512)"
    )
    parser.add_argument("--keep-alive", default="5m", help="how long an idle model stays loaded (5m)")
    parser.add_argument(
        "--load-seconds-per-gb",
        type=float,
        default=0.0,
        help="load time per GB of model, after --load-delay (0)",
    )
    parser.add_argument(
        "--prefill-tokens-per-second",
        type=float,
        default=2500.0,
        help="prompt tokens processed a second, those not cached (2500: a mid-range GPU, an 8B model)",
    )
    parser.add_argument(
        "--prompt-cache-tokens",
        type=int,
        default=100_000,
        help="tokens of evicted prompts kept per model in host memory (100000: Ollama's 8 GiB)",
    )
    parser.add_argument(
        "--restore-tokens-per-second",
        type=float,
        default=50_000.0,
        help="tokens a second brought back from the host prompt cache (50000)",
    )
    parser.add_argument(
        "--no-shared-compute",
        dest="shared_compute",
        action="store_false",
        help="streams at once each run at full speed (by default they share the node's compute)",
    )
    parser.add_argument("--version", dest="ollama_version", default="0.33.0", help="version to report")
    parser.add_argument(
        "--api",
        choices=("ollama", "openai"),
        default="ollama",
        help="ollama: Ollama's whole API (default); openai: only OpenAI's /v1 routes, as llama.cpp's server",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    for name in ("fail_rate", "hang_rate", "die_rate", "stall_rate", "error_rate", "flood_rate"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            parser.error(f"--{name.replace('_', '-')} must be between 0 and 1")
    if (
        args.fail_rate + args.hang_rate + args.die_rate + args.stall_rate + args.error_rate > 1.0
    ):  # flood apart
        parser.error("the --*-rate faults must add up to at most 1")
    for name in ("prefill_tokens_per_second", "prompt_cache_tokens", "restore_tokens_per_second"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be 0 or more")
    for name in ("num_parallel", "max_loaded_models", "max_queue"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    try:
        args.keep_alive = parse_keep_alive(args.keep_alive, None)
    except ValueError as exc:
        parser.error(f"--keep-alive: {exc}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.log_level)
    behaviour = Behaviour(
        tokens_per_second=args.tokens_per_second,
        default_tokens=args.tokens if args.tokens is not None else 24,
        natural=args.tokens is None,
        load_delay=args.load_delay,
        fail_rate=args.fail_rate,
        hang_rate=args.hang_rate,
        die_rate=args.die_rate,
        stall_rate=args.stall_rate,
        error_rate=args.error_rate,
        flood_rate=args.flood_rate,
        seed=args.seed,
        num_parallel=args.num_parallel,
        max_loaded_models=args.max_loaded_models,
        vram_gb=args.vram_gb,
        max_queue=args.max_queue,
        keep_alive=finite(args.keep_alive),
        load_seconds_per_gb=args.load_seconds_per_gb,
        shared_compute=args.shared_compute,
        prefill_tokens_per_second=args.prefill_tokens_per_second,
        prompt_cache_tokens=args.prompt_cache_tokens,
        restore_tokens_per_second=args.restore_tokens_per_second,
    )
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    app = create_app(models, behaviour, version=args.ollama_version, api=args.api)
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
