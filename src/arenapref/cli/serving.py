"""`arenapref serve`: a model over HTTP (the serve extra: FastAPI + uvicorn)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from arenapref.cli.common import TRUST_OPT, warn


def serve(
    model_dir: Path = typer.Argument(..., help="Model directory written by `arenapref train`."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback exposes the model to the network."),
    port: int = typer.Option(8000, help="Port to bind (0: any free port)."),
    model_id: Optional[str] = typer.Option(None, help="Model name in /v1/models and /classify (default: the folder name)."),
    batching: bool = typer.Option(True, "--batching/--no-batching", help="Score concurrent requests together."),
    max_batch: int = typer.Option(64, help="Most pairs in one model call."),
    max_wait_ms: float = typer.Option(5.0, help="Longest a request waits for others to join its batch."),
    max_pairs: int = typer.Option(256, help="Pairs per request (413 above)."),
    max_turns: int = typer.Option(64, help="Turns per prompt/response field (422 above)."),
    max_chars: int = typer.Option(100_000, help="Characters per prompt/response field, all turns together (422 above)."),
    max_body_mb: float = typer.Option(4.0, help="Request body size in MiB (413 above)."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds per request, body and scoring (504 past it)."),
    header_timeout: float = typer.Option(10.0, "--header-timeout", help="Seconds a client has to send the request line "
                                         "and headers (408 and the connection closed past it)."),
    body_timeout: Optional[float] = typer.Option(None, "--body-timeout", help="Seconds to receive the whole body "
                                                 "(408, connection closed; default: --timeout)."),
    token_file: Optional[Path] = typer.Option(None, help="File holding a bearer token to require (or set ARENAPREF_TOKEN)."),
    keep_alive: float = typer.Option(75.0, help="Seconds an idle keep-alive connection stays open."),
    log_level: str = typer.Option("info", help="Log level: debug, info, warning, error."),
    trust_model_code: bool = TRUST_OPT,
):
    """Serve a model over HTTP: POST /v1/judge, POST /classify (vLLM/SGLang shape), GET /v1/models, /healthz,
    a page at / and API docs at /docs. Access logs are JSON lines on stderr."""
    import ipaddress
    import logging

    from arenapref.errors import ConfigError, UsageError
    from arenapref.models import load_model
    from arenapref.serve import require_serve_extra
    from arenapref.serve.settings import ServeSettings, resolve_token

    require_serve_extra()

    from arenapref.serve.app import create_app

    # No `trace`: at that level uvicorn prints each request's scope, headers and so the token included.
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int) or log_level.lower() not in ("debug", "info", "warning", "error"):
        raise UsageError(f"--log-level {log_level!r}: choose debug, info, warning or error")
    try:
        token = resolve_token(token_file)
    except (OSError, ValueError) as e:
        raise UsageError(f"--token-file: {e}") from None
    try:
        settings = ServeSettings(
            host=host, port=port, model_id=model_id or model_dir.resolve().name, model_dir=model_dir, batching=batching,
            max_batch=max_batch, max_wait_ms=max_wait_ms, max_pairs=max_pairs, max_turns=max_turns, max_chars=max_chars,
            max_body_bytes=int(max_body_mb * 1024 * 1024), request_timeout_s=timeout, header_timeout_s=header_timeout,
            body_timeout_s=body_timeout, token=token)
    except Exception as e:  # noqa: BLE001 - pydantic ValidationError: out-of-range options
        raise ConfigError(f"invalid option: {e}") from None
    model = load_model(model_dir, trust_pickle=trust_model_code)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    serve_log = logging.getLogger("arenapref.serve")
    serve_log.handlers[:] = [handler]
    serve_log.setLevel(level)
    serve_log.propagate = False
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and token is None:
        warn(f"warning: serving on {host} without a token; anyone who can reach it can use the model "
             "(set ARENAPREF_TOKEN or --token-file)")
    # uvicorn's own access log is off: ours has request ids and pair counts and leaves out query strings.
    # Keep-alive outlasts clients' pool expiry (httpx: 5 s, as uvicorn's default): with equal timeouts a client
    # reuses a connection the server is closing, and the request fails with a read error.
    from arenapref.serve.server import run

    run(create_app(model, settings), settings, access_log=False, log_level=log_level.lower(),
        timeout_keep_alive=keep_alive, timeout_graceful_shutdown=timeout + 5, server_header=False)


def register(app: typer.Typer) -> None:
    app.command()(serve)
