"""HTTP serving of a trained model: `arenapref serve MODEL_DIR` (FastAPI + uvicorn, the `serve` extra).

    POST /v1/judge     {"prompt": "...", "response_a": "...", "response_b": "...", "swap": true}
                       or {"pairs": [{"id": "q1", "prompt": ["turn 1", "turn 2"], "response_a": [...], ...}], "swap": ...}
                       -> {"model", "labels", "swap", "results": [{"index", "id", "winner_model_a",
                           "winner_model_b", "winner_tie", "label"}]}, one result per pair, in order
    POST /classify     vLLM / SGLang classification shape (also at /v1/classify):
                       {"model": "<id>", "input": [PAIR, ...]} -> {"id", "object": "list", "created", "model",
                       "data": [{"index", "label", "probs": [P(A), P(B), P(tie)], "num_classes": 3}], "usage"}
                       where PAIR is the object {"prompt", "response_a", "response_b"}, or a string holding that
                       object as JSON (for clients that only send strings). Usage counts are 0: no tokens here.
    GET  /v1/models    id, family, labels, versions, calibration.json's content when the model dir has one
    GET  /healthz      200 while the scoring worker runs, with micro-batching counters
    GET  /             a page to paste a prompt and two answers; /docs: the OpenAPI docs

Turns are lists of strings or one plain string. Limits answer 413 (body bytes, pairs per request) or 422
(turns or characters per field) with the limit's name in `error.limit` and in the message. With a token
(--token-file or $ARENAPREF_TOKEN) every endpoint but /, /healthz and the docs needs `Authorization: Bearer`.

Import `create_app` and friends from the submodules; this package root stays importable without the extra so
the CLI can say which extra to install.
"""

from __future__ import annotations


def require_serve_extra() -> None:
    """Raise MissingExtraError naming the extra when FastAPI or uvicorn is missing."""
    from arenapref.errors import require_extra

    require_extra("serve", "fastapi", "uvicorn", what="serving")
