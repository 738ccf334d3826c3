"""`recsys-pref serve` and `python -m recsys_pref.service`: options, checks, then uvicorn.

    recsys-pref serve --model DIR [--store URL] [--host 127.0.0.1] [--port 8000]
                      [--api-keys-file FILE] [--insecure-no-auth] [--migrate] [--keep-history]

Keys come from RECSYS_PREF_API_KEYS and/or --api-keys-file; without any the server does not
start unless --insecure-no-auth is given, which it prints loudly on stderr.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recsys_pref.service.auth import API_KEYS_ENV, KeyCheck, load_keys
from recsys_pref.service.settings import ENGINES, ServiceConfig

INSECURE_BANNER = "!" * 78 + "\n!! recsys-pref serve: --insecure-no-auth: EVERY ROUTE IS OPEN TO ANYONE WHO CAN REACH " \
                  "{host}:{port}\n" + "!" * 78


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `serve` (shared by the CLI's subcommand and `python -m recsys_pref.service`)."""
    parser.add_argument("--model", type=Path, required=True, help="artifact directory written by `recsys-pref fit`")
    parser.add_argument("--store", default=None, metavar="URL",
                        help="SQLAlchemy URL of the profile store (default: sqlite:///DIR.profiles.sqlite beside the model)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--api-keys-file", type=Path, default=None,
                        help=f"one API key per line (and/or ${API_KEYS_ENV}, comma-separated)")
    parser.add_argument("--insecure-no-auth", action="store_true", help="serve without keys (printed loudly)")
    parser.add_argument("--migrate", action="store_true",
                        help="refold a store written for another model instead of refusing it")
    parser.add_argument("--keep-history", action="store_true", help="also store raw interaction rows")
    parser.add_argument("--engine", choices=ENGINES, default="persona",
                        help="persona (default) or als, implicit's ALS as the reference of `bench serve`")
    parser.add_argument("--max-k", type=int, default=ServiceConfig.max_k, help="largest k a request may ask")
    parser.add_argument("--max-body-bytes", type=int, default=ServiceConfig.max_body_bytes,
                        help="request bodies above it get 413")


def add_serve_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `serve` on the CLI's subparsers; its handler is `serve_main`."""
    parser = subparsers.add_parser("serve", help="serve recommendations, onboarding and stored profiles over HTTP")
    add_serve_arguments(parser)
    parser.set_defaults(handler=serve_main)
    return parser


def serve_main(args: argparse.Namespace) -> int:
    """Check the keys and the store, then serve until interrupted."""
    keys = load_keys(args.api_keys_file)
    if not keys and not args.insecure_no_auth:
        raise ValueError(f"no API key: set {API_KEYS_ENV} or pass --api-keys-file (or --insecure-no-auth to serve "
                         "without keys)")
    if args.insecure_no_auth:
        print(INSECURE_BANNER.format(host=args.host, port=args.port), file=sys.stderr, flush=True)
    import torch
    import uvicorn

    from recsys_pref.service.app import build_service, create_app

    torch.set_num_threads(1)  # many small requests at once: one thread each beats threads fighting for 2 cores
    config = ServiceConfig(model_dir=args.model, store_url=args.store, migrate=args.migrate,
                           keep_history=args.keep_history, engine=args.engine, max_k=args.max_k,
                           max_body_bytes=args.max_body_bytes)
    service = build_service(config)
    app = create_app(service, KeyCheck(None if args.insecure_no_auth else keys))
    print(f"recsys-pref serve: {config.engine} model {args.model} (hash {service.engine.model_hash[:12]}…), "
          f"store {service.store.url}, http://{args.host}:{args.port}/ (OpenAPI: /docs)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m recsys_pref.service`: `serve` without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="python -m recsys_pref.service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return serve_main(args)
    except (ValueError, OSError) as error:
        print(f"recsys-pref serve: error: {error}", file=sys.stderr)
        return 2
