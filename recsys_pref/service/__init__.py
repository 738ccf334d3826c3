"""The recommendation service: `recsys-pref serve` (DESIGN.md, "Serving, scale and the carrier
of a person").

An ASGI app (FastAPI on uvicorn) over the one serving pipeline with a persistent profile store:

    settings  ServiceConfig: the model, the store, limits and batching
    store     ProfileStore: states, controls and onboarding sessions in SQL (SQLite WAL default)
    engine    the model behind the service: the persona pipeline (reference: the ALS reference)
    profiles  ProfileService: every operation, input checked first, each write one transaction
    batching  MicroBatcher: concurrent recommendation requests served by one pipeline call
    auth      API keys (Bearer) and the page's cookie; limits: body size and content type
    metrics   Prometheus counts and latency histograms per route
    page      the server-rendered page at /
    app       the routes; main: the command line (`serve_main`, `add_serve_command`)

Heavy modules load inside `serve_main`, so importing this package is cheap.
"""
from recsys_pref.service.main import add_serve_arguments, add_serve_command, serve_main

__all__ = ["add_serve_arguments", "add_serve_command", "serve_main"]
