"""HTTP serving of a trained model: `arenapref serve MODEL_DIR` (FastAPI + uvicorn, the `serve` extra).

    POST /v1/judge     {"prompt": "...", "response_a": "...", "response_b": "...", "swap": true}
                       or {"pairs": [{"id": "q1", "prompt": ["turn 1", "turn 2"], "response_a": [...], ...}], "swap": ...}
                       -> {"model", "labels", "swap", "results": [{"index", "id", "winner_model_a",
                           "winner_model_b", "winner_tie", "label"}]}, one result per pair, in order
    POST /classify     vLLM / SGLang classification shape (also at /v1/classify):
                       {"model": "<id>" | "default", "input": [PAIR, ...], "use_activation": true}
                       -> {"id", "object": "list", "created", "model",
                       "data": [{"index", "label", "probs": [P(A), P(B), P(tie)], "num_classes": 3}], "usage"}
                       where PAIR is the object {"prompt", "response_a", "response_b"}, or a string holding that
                       object as JSON (for clients that only send strings). An empty input is a 400, as in SGLang.
                       `use_activation: false` returns raw scores, as vLLM does: here log-probabilities, which
                       are logits up to a constant. `usage.prompt_tokens` counts the model's tokenizer's tokens
                       (model.count_tokens); for a model without one, characters / 4 per pair, with
                       `usage.approximate: true`.
    GET  /v1/models    id, family, labels, versions, calibration.json's content when the model dir has one
    GET  /healthz      200 while the scoring worker runs, with micro-batching and slow-client counters
    GET  /             a page to paste a prompt and two answers; /docs: the OpenAPI docs (Swagger UI, served
                       from this server's own copy: no CDN)

Turns are lists of strings or one plain string. POST bodies must be sent as `Content-Type: application/json`
(415 otherwise). Limits answer 413 (body bytes, pairs per request) or 422 (turns or characters per field) with
the limit's name in `error.limit` and in the message. With a token (--token-file or $ARENAPREF_TOKEN) every
endpoint but /, /healthz and the docs needs `Authorization: Bearer <token>` (the scheme in any case).

Slow clients are cut off: a body not received within body_timeout_s answers 408 and closes the connection
(middleware.py); request headers not received within header_timeout_s do the same at the protocol level
(server.py, so only for servers started through `serve.server.run` / `server_config`).

Import `create_app` and friends from the submodules; this package root stays importable without the extra so
the CLI can say which extra to install.
"""

from __future__ import annotations


def require_serve_extra() -> None:
    """Raise MissingExtraError naming the extra when FastAPI, uvicorn or fastapi-offline is missing."""
    from arenapref.errors import require_extra

    require_extra("serve", "fastapi", "uvicorn", "fastapi_offline", what="serving")
