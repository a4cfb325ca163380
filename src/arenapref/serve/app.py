"""The HTTP API around one loaded model: `create_app(model, settings)`.

Endpoints: POST /v1/judge (arenapref's own shape), POST /classify and /v1/classify (the shape vLLM and
SGLang use for classification models), GET /v1/models, GET /healthz, the page at / and OpenAPI docs at /docs
(Swagger UI served from the fastapi-offline package's copy: nothing is fetched from a CDN).
Probabilities are always in LABELS order: winner_model_a, winner_model_b, winner_tie.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Sequence

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import (
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from arenapref._version import __version__
from arenapref.data.record import LABELS, PairRecord
from arenapref.serve.batching import MicroBatcher, QueueFull
from arenapref.serve.middleware import (
    Gate,
    InFlight,
    SlowClients,
    error_body,
    log_event,
)
from arenapref.serve.page import PAGE_CSP, PAGE_HTML
from arenapref.serve.schemas import (
    SGLANG_DEFAULT_MODEL,
    ApiError,
    ClassifyData,
    ClassifyRequest,
    ClassifyResponse,
    ClassifyUsage,
    Judgement,
    JudgeRequest,
    JudgeResponse,
    approximate_tokens,
    to_records,
)
from arenapref.serve.settings import ServeSettings

ERRORS = {code: {"description": text, "content": {"application/json": {"example": {
    "error": {"message": "...", "type": "...", "code": code}, "request_id": "3f2c..."}}}}
    for code, text in [(401, "missing or wrong bearer token"), (408, "body not received in time (the connection is closed)"),
                       (413, "body or pair count over a limit (named in the message)"),
                       (415, "a Content-Type other than application/json, or none"),
                       (422, "malformed pair, or turns/characters over a limit (named in the message)"),
                       (503, "too many pairs queued"), (504, "not scored within request_timeout_s")]}

JSON_PATHS = frozenset({"/v1/judge", "/classify", "/v1/classify"})
DOCS_ASSETS = "/docs/assets"
# The docs page may load only what this server serves (Swagger UI's init script is inline).
DOCS_CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'")


def docs_assets_dir() -> Path:
    """Swagger UI's script, stylesheet and icon, as the fastapi-offline package ships them (the `serve` extra)."""
    from arenapref.errors import require_extra

    require_extra("serve", "fastapi_offline", what="the offline API docs")
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def model_info(model, settings: ServeSettings) -> dict:
    """What /v1/models reports: id, family, labels, versions, training size, and calibration.json if present."""
    meta, calibration, created = {}, None, int(time.time())
    directory = settings.model_dir
    if directory is not None:
        meta_path = Path(directory) / "arenapref.json"
        if meta_path.exists():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            created = int(meta_path.stat().st_mtime)
            if meta.get("saved_at"):
                created = int(datetime.fromisoformat(meta["saved_at"]).timestamp())
        calibration_path = Path(directory) / "calibration.json"
        if calibration_path.exists():
            try:
                calibration = json.loads(calibration_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                calibration = {"error": f"calibration.json is unreadable: {e}"}
    return {
        "id": settings.model_id, "object": "model", "created": created, "owned_by": "arenapref",
        "family": getattr(model, "family", meta.get("family")), "labels": list(LABELS),
        "swap_tta": bool(getattr(getattr(model, "config", None), "swap_tta", False)),
        "n_train": meta.get("n_train", getattr(model, "n_train_", None)),
        "model_arenapref_version": meta.get("arenapref_version"), "saved_at": meta.get("saved_at"),
        # load_model applies calibration.json inside predict_proba, so what is served is calibrated when present.
        "calibration": calibration, "calibrated": getattr(model, "calibration", None) is not None,
        "version": __version__,
    }


def create_app(model, settings: ServeSettings | None = None) -> FastAPI:
    """An ASGI app serving `model` (anything with predict_proba(records, swap_tta=...) -> (n, 3)).

    Args:
        model: a loaded model (`load_model(directory)`).
        settings: limits, batching, timeouts and token (ServeSettings); defaults when None.
    Returns:
        The FastAPI app; serve it with `arenapref.serve.server.run(app, settings)` (uvicorn with header timeouts).

    >>> app = create_app(load_model("models/features"), ServeSettings(model_id="features"))  # doctest: +SKIP
    """
    settings = settings or ServeSettings()
    default_swap = bool(getattr(getattr(model, "config", None), "swap_tta", False))
    info = model_info(model, settings)
    count_tokens = getattr(model, "count_tokens", None)  # records -> list[int], or None without a tokenizer

    def score(items: Sequence[tuple[PairRecord, bool, bool]]) -> np.ndarray:
        # Runs in the batcher's thread: (record, swap, count) -> rows of P(A), P(B), P(tie), tokens (NaN when not
        # counted). Pairs that asked for the A/B swap go through the model's own swap-TTA, so a served
        # probability equals `arenapref predict`'s for the same pair and setting. Tokens are counted here too,
        # since a tokenizer belongs to the model and the model is only ever used from this thread.
        out = np.full((len(items), 4), np.nan)
        for swap in (False, True):
            idx = [i for i, (_, s, _) in enumerate(items) if s is swap]
            if idx:
                out[idx, :3] = model.predict_proba([items[i][0] for i in idx], swap_tta=swap)
        counted = [i for i, (_, _, count) in enumerate(items) if count]
        if counted and callable(count_tokens):
            counts = count_tokens([items[i][0] for i in counted])
            if counts is not None:
                counts = list(counts)
                if len(counts) != len(counted):
                    raise RuntimeError(f"count_tokens returned {len(counts)} counts for {len(counted)} records")
                out[counted, 3] = counts
        return out

    in_flight = InFlight()
    batcher = MicroBatcher(score, max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                           enabled=settings.batching, max_queue=settings.max_queue_pairs, in_flight=in_flight)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        log_event(logging.INFO, "startup", model=settings.model_id, family=info["family"], batching=settings.batching,
                  max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms, auth=settings.token is not None)
        yield
        await batcher.stop()  # uvicorn has already let the in-flight requests finish
        log_event(logging.INFO, "shutdown", **batcher.stats.as_dict())

    app = FastAPI(
        title="arenapref", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
        description="Predict which of two chatbot answers people prefer: P(A wins), P(B wins), P(tie), "
                    "in the order winner_model_a, winner_model_b, winner_tie. With a token configured, send "
                    "`Authorization: Bearer <token>` to every /v1 and /classify endpoint.",
    )
    app.state.settings = settings
    app.state.batcher = batcher
    app.state.slow_clients = slow_clients = SlowClients()  # serve.server's protocol counts header timeouts here
    app.add_middleware(Gate, settings=settings, in_flight=in_flight, slow_clients=slow_clients, json_paths=JSON_PATHS)
    app.mount(DOCS_ASSETS, StaticFiles(directory=docs_assets_dir()), name="docs-assets")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return _error(request, exc.status, exc.message, exc.type, exc.limit)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):  # 404, 405 from routing
        return _error(request, exc.status_code, str(exc.detail), "not_found_error" if exc.status_code == 404 else
                      "invalid_request_error")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        # Name each bad field; never echo the input back (it can be megabytes of someone's conversation).
        problems = [f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()[:5]]
        more = f" (and {len(exc.errors()) - 5} more)" if len(exc.errors()) > 5 else ""
        return _error(request, 422, "invalid request: " + "; ".join(problems) + more, "invalid_request_error")

    # The Gate middleware checks the token; this only puts the "Authorize" button and the lock icons in /docs.
    guarded = [Depends(HTTPBearer(auto_error=False))] if settings.token else []

    async def judge_records(request: Request, records: list[PairRecord], swap: bool, count: bool = False) -> np.ndarray:
        """Rows of P(A), P(B), P(tie), tokens (NaN unless `count` and the model counted them)."""
        request.state.pairs = len(records)
        if not records:
            return np.zeros((0, 4))
        try:
            return await asyncio.wait_for(batcher.submit([(r, swap, count) for r in records]),
                                          settings.request_timeout_s)
        except QueueFull as e:
            raise ApiError(503, str(e), "overloaded", "max_queue_pairs") from None
        except TimeoutError:
            raise ApiError(504, f"not scored within {settings.request_timeout_s:g} s (request_timeout_s)", "timeout",
                           "request_timeout_s") from None

    @app.post("/v1/judge", response_model=JudgeResponse, responses=ERRORS, tags=["judge"], dependencies=guarded)
    async def judge(body: JudgeRequest, request: Request) -> JudgeResponse:
        """Score one pair, or a list `pairs`, in order. `swap` averages both A/B orders."""
        pairs = body.pair_list()
        swap = default_swap if body.swap is None else body.swap
        probs = (await judge_records(request, to_records(pairs, settings), swap))[:, :3]
        results = [Judgement(index=i, id=pair.id, label=LABELS[int(np.argmax(p))],
                             **{label: float(p[k]) for k, label in enumerate(LABELS)})
                   for i, (pair, p) in enumerate(zip(pairs, probs))]
        return JudgeResponse(model=settings.model_id, swap=swap, results=results)

    @app.post("/classify", response_model=ClassifyResponse, responses={
        **ERRORS, 400: {"description": "empty input (as SGLang answers it)"}, 404: {"description": "unknown model"}},
              tags=["vLLM / SGLang compatible"], dependencies=guarded)
    @app.post("/v1/classify", response_model=ClassifyResponse, include_in_schema=False, dependencies=guarded)
    async def classify(body: ClassifyRequest, request: Request) -> ClassifyResponse:
        """vLLM/SGLang classification shape: `input` is one pair or a list (not empty); `probs` are in LABELS
        order, or their logarithms with `use_activation: false`. `usage` counts the model tokenizer's tokens, or
        characters / 4 for a model without one (then `usage.approximate` is true)."""
        if body.model is not None and body.model not in (settings.model_id, SGLANG_DEFAULT_MODEL):
            raise ApiError(404, f"the model `{body.model}` does not exist; this server serves `{settings.model_id}` "
                                f"(`{SGLANG_DEFAULT_MODEL}` names it too)", "not_found_error")
        swap = default_swap if body.swap is None else body.swap
        records = to_records(body.pair_list(), settings, "input")
        rows = await judge_records(request, records, swap, count=True)
        probs, counts = rows[:, :3], rows[:, 3]
        exact = bool(np.isfinite(counts).all())
        tokens = int(counts.sum()) if exact else sum(approximate_tokens(r) for r in records)
        # use_activation=false: raw scores as vLLM gives them; log-probabilities are logits up to a constant.
        values = probs if body.use_activation is not False else np.log(np.maximum(probs, np.finfo(float).tiny))
        data = [ClassifyData(index=i, label=LABELS[int(np.argmax(p))], probs=[float(x) for x in v])
                for i, (p, v) in enumerate(zip(probs, values))]
        return ClassifyResponse(id=f"classify-{uuid.uuid4().hex}", created=int(time.time()), model=settings.model_id,
                                data=data, usage=ClassifyUsage(prompt_tokens=tokens, total_tokens=tokens,
                                                               approximate=not exact))

    @app.get("/v1/models", tags=["info"], dependencies=guarded)
    async def models() -> dict:
        """The served model: id, family, labels, versions, calibration (when the model dir has calibration.json)."""
        return {"object": "list", "data": [info]}

    @app.get("/healthz", tags=["info"])
    async def healthz() -> JSONResponse:
        """200 while the scoring worker runs (503 otherwise), with batching counters."""
        ok = batcher.running
        return JSONResponse(status_code=200 if ok else 503, content={
            "status": "ok" if ok else "unavailable", "model": settings.model_id, "version": __version__,
            "batching": {"enabled": settings.batching, "max_batch": settings.max_batch,
                         "max_wait_ms": settings.max_wait_ms, **batcher.stats.as_dict()},
            "slow_clients": {"header_timeout_s": settings.header_timeout_s, "body_timeout_s": settings.body_timeout,
                             **slow_clients.as_dict()}})

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title="arenapref - API docs",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            oauth2_redirect_url=f"{root}{app.swagger_ui_oauth2_redirect_url}",
            swagger_ui_parameters={"validatorUrl": None})  # else Swagger UI shows a badge from validator.swagger.io
        page.headers["content-security-policy"] = DOCS_CSP
        return page

    @app.get(app.swagger_ui_oauth2_redirect_url, include_in_schema=False)
    async def docs_oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE_HTML, headers={"content-security-policy": PAGE_CSP, "cache-control": "no-store"})

    return app


def _error(request: Request, status: int, message: str, type: str, limit: str | None = None) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "")
    return JSONResponse(status_code=status, content=json.loads(error_body(status, message, type, request_id, limit)))
