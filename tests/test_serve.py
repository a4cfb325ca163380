"""`arenapref serve`: the HTTP API, its limits, auth, micro-batching, error handling, a real uvicorn and the page.

Most tests drive the app in-process (FastAPI's TestClient, or httpx over ASGI for concurrency) with a small
deterministic model, so that expected probabilities can be computed here; one test serves a model trained on
real data through the CLI, and one drives the page in headless Chromium.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlencode

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the `serve` extra is not installed: pip install 'arenapref[serve]'")
pytest.importorskip("uvicorn", reason="the `serve` extra is not installed: pip install 'arenapref[serve]'")
httpx = pytest.importorskip("httpx", reason="the `serve` extra is not installed: pip install 'arenapref[serve]'")

import uvicorn  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from arenapref.data.record import LABELS, PairRecord, swap_labels  # noqa: E402
from arenapref.serve import require_serve_extra  # noqa: E402
from arenapref.serve.app import create_app  # noqa: E402
from arenapref.serve.batching import MicroBatcher  # noqa: E402
from arenapref.serve.server import server_config  # noqa: E402
from arenapref.serve.settings import ServeSettings, resolve_token  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "s3cr3t-t0ken-for-tests"


class LengthModel:
    """Scores a pair from the lengths of its two responses, with a bias towards A so that the A/B swap matters.

    Records every predict_proba call; `delay` makes a call slow; a prompt turn "boom" makes the call raise.
    """

    family = "length"

    def __init__(self, delay: float = 0.0, swap_tta: bool = True):
        self.config = SimpleNamespace(swap_tta=swap_tta)
        self.delay = delay
        self.calls: list[tuple[int, bool]] = []
        self.seen: list[PairRecord] = []

    @staticmethod
    def raw(records) -> np.ndarray:
        z = np.array([[len("".join(r.response_a)) / 20 + 0.4, len("".join(r.response_b)) / 20, 0.3] for r in records])
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def expected(self, records, swap: bool) -> np.ndarray:
        p = self.raw(records)
        return (p + swap_labels(self.raw([r.swapped() for r in records]))) / 2 if swap else p

    def predict_proba(self, records, swap_tta=None):
        swap = self.config.swap_tta if swap_tta is None else swap_tta
        self.calls.append((len(records), swap))
        self.seen.extend(records)
        if any("boom" in r.prompt for r in records):
            raise RuntimeError("model exploded at /secret/path/weights.bin")
        if self.delay:
            time.sleep(self.delay)
        return self.expected(records, swap)


def rec(prompt, a, b) -> PairRecord:
    turns = lambda x: (x,) if isinstance(x, str) else tuple(x)  # noqa: E731
    return PairRecord(id="x", prompt=turns(prompt), response_a=turns(a), response_b=turns(b))


def probs_of(result: dict) -> list[float]:
    return [result[label] for label in LABELS]


@pytest.fixture
def model() -> LengthModel:
    return LengthModel()


@pytest.fixture
def client(model):
    with TestClient(create_app(model, ServeSettings(model_id="length"))) as c:
        yield c


# --- /v1/judge ---------------------------------------------------------------------------------------
def test_judge_scores_one_pair_with_label_names(client, model):
    r = client.post("/v1/judge", json={"prompt": "What is 2+2?", "response_a": "4", "response_b": "It is four.", "swap": False})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["labels"] == list(LABELS) and body["model"] == "length" and body["swap"] is False
    (result,) = body["results"]
    assert result["index"] == 0
    assert probs_of(result) == pytest.approx(model.expected([rec("What is 2+2?", "4", "It is four.")], False)[0])
    assert sum(probs_of(result)) == pytest.approx(1.0)
    assert result["label"] == LABELS[int(np.argmax(probs_of(result)))]
    assert r.headers["x-request-id"]


def test_a_plain_string_is_one_turn_and_lists_are_turns(client, model):
    as_string = client.post("/v1/judge", json={"prompt": "hi", "response_a": "hello", "response_b": "hey"}).json()
    as_list = client.post("/v1/judge", json={"prompt": ["hi"], "response_a": ["hello"], "response_b": ["hey"]}).json()
    assert as_string["results"] == as_list["results"]
    multi = client.post("/v1/judge", json={"prompt": ["hi", "more?"], "response_a": ["hello", "sure, more"],
                                           "response_b": [None, "no"]})
    assert multi.status_code == 200
    assert model.seen[-1].response_a == ("hello", "sure, more") and model.seen[-1].response_b == ("", "no")


def test_many_pairs_come_back_in_order_with_their_ids(client, model):
    pairs = [{"id": f"q{i}", "prompt": f"question {i}", "response_a": "a" * (3 * i), "response_b": "b" * (40 - 2 * i)}
             for i in range(20)]
    body = client.post("/v1/judge", json={"pairs": pairs, "swap": True}).json()
    expected = model.expected([rec(p["prompt"], p["response_a"], p["response_b"]) for p in pairs], True)
    assert [r["index"] for r in body["results"]] == list(range(20))
    assert [r["id"] for r in body["results"]] == [p["id"] for p in pairs]
    np.testing.assert_allclose([probs_of(r) for r in body["results"]], expected)


def test_an_empty_list_of_pairs_gets_an_empty_list_of_results(client, model):
    assert client.post("/v1/judge", json={"pairs": []}).json()["results"] == []
    assert model.calls == []


def test_classify_rejects_an_empty_input_as_sglang_does(client, model):
    for empty, where in [([], "input"), ("", "input"), ("  ", "input"), ([{"prompt": "p", "response_a": "a",
                                                                            "response_b": "b"}, " "], "input[1]")]:
        r = client.post("/classify", json={"input": empty})
        assert r.status_code == 400, (empty, r.text)
        assert r.json()["error"]["message"].startswith(f"{where} cannot be empty")
    assert model.calls == []


def test_swap_averages_both_orders(client, model):
    pair = {"prompt": "p", "response_a": "short", "response_b": "a much longer answer"}
    mirrored = {"prompt": "p", "response_a": pair["response_b"], "response_b": pair["response_a"]}
    one = rec("p", pair["response_a"], pair["response_b"])
    plain = probs_of(client.post("/v1/judge", json=pair | {"swap": False}).json()["results"][0])
    swapped = probs_of(client.post("/v1/judge", json=pair | {"swap": True}).json()["results"][0])
    mirror = probs_of(client.post("/v1/judge", json=mirrored | {"swap": True}).json()["results"][0])
    assert plain == pytest.approx(model.raw([one])[0])
    assert swapped == pytest.approx(((model.raw([one]) + swap_labels(model.raw([one.swapped()]))) / 2)[0])
    assert swapped != pytest.approx(plain)  # the model's A bias makes the two orders disagree
    assert mirror == pytest.approx([swapped[1], swapped[0], swapped[2]])  # averaged, the order no longer matters
    default = client.post("/v1/judge", json=pair).json()
    assert default["swap"] is True and probs_of(default["results"][0]) == pytest.approx(swapped)  # model's setting


def test_malformed_requests_get_422_naming_the_field(client):
    r = client.post("/v1/judge", json={"prompt": "only a prompt"})
    assert r.status_code == 422 and "response_a" in r.json()["error"]["message"]
    r = client.post("/v1/judge", json={"prompt": "p", "response_a": 5, "response_b": "b"})
    assert r.status_code == 422 and "response_a" in r.json()["error"]["message"]
    r = client.post("/v1/judge", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request_error"
    r = client.post("/v1/judge", json={"prompt": [], "response_a": "a", "response_b": "b"})
    assert r.status_code == 422 and "pairs[0].prompt has no turns" in r.json()["error"]["message"]


def test_a_body_that_is_not_json_gets_415_naming_the_content_type(client, model):
    body = json.dumps({"prompt": "p", "response_a": "a", "response_b": "b"}).encode()
    for wrong in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        for path in ("/v1/judge", "/classify"):
            r = client.post(path, content=body if path == "/v1/judge" else b'{"input": []}',
                            headers={"content-type": wrong})
            assert r.status_code == 415, (path, wrong, r.text)
            message = r.json()["error"]["message"]
            assert "Content-Type: application/json" in message and wrong.split(";")[0] in message
    for right in ("application/json", "application/json; charset=utf-8", "application/vnd.api+json"):
        assert client.post("/v1/judge", content=body, headers={"content-type": right}).status_code == 200, right
    r = client.post("/v1/judge", content=body)  # none given: FastAPI does not parse it as JSON either
    assert r.status_code == 415 and "got no Content-Type" in r.json()["error"]["message"]
    assert len(model.calls) == 3


def test_lone_surrogate_escapes_are_repaired_not_rejected(client, model):
    body = '{"prompt": "emoji \\ud83d here", "response_a": "a", "response_b": "b"}'
    r = client.post("/v1/judge", content=body.encode(), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert model.seen[-1].prompt == ("emoji \ufffd here",)


# --- /classify (vLLM / SGLang shape) -----------------------------------------------------------------
def test_classify_answers_in_the_vllm_shape(client, model):
    pair = {"prompt": "hi", "response_a": "hello there", "response_b": "hey"}
    r = client.post("/classify", json={"model": "length", "input": [pair, json.dumps(pair)]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == "length" and body["id"].startswith("classify-")
    assert isinstance(body["created"], int) and set(body["usage"]) >= {"prompt_tokens", "total_tokens"}
    assert [d["index"] for d in body["data"]] == [0, 1]
    expected = model.expected([rec("hi", "hello there", "hey")], True)[0]
    for d in body["data"]:
        assert d["num_classes"] == 3 and d["probs"] == pytest.approx(expected)
        assert d["label"] == LABELS[int(np.argmax(expected))]
    single = client.post("/v1/classify", json={"input": pair}).json()  # SGLang's path; `model` optional
    assert single["data"][0]["probs"] == pytest.approx(expected)


class TokenizingModel(LengthModel):
    """LengthModel with a tokenizer: one token per whitespace-separated word of the three fields."""

    def __init__(self):
        super().__init__()
        self.counted: list[int] = []

    def count_tokens(self, records):
        self.counted.append(len(records))
        return [sum(len(turn.split()) for field in (r.prompt, r.response_a, r.response_b) for turn in field)
                for r in records]


class NoTokenizerModel(LengthModel):
    def count_tokens(self, records):
        return None


def test_classify_usage_counts_the_models_tokens():
    model = TokenizingModel()
    pairs = [{"prompt": "one two three", "response_a": ["four", "five six"], "response_b": "seven"},
             {"prompt": "eight", "response_a": "nine", "response_b": "ten eleven"}]
    with TestClient(create_app(model, ServeSettings(model_id="length"))) as c:
        usage = c.post("/classify", json={"input": pairs}).json()["usage"]
        c.post("/v1/judge", json={"pairs": pairs})
    assert usage["prompt_tokens"] == usage["total_tokens"] == 11 and usage["completion_tokens"] == 0
    assert usage["approximate"] is False
    assert model.counted == [2]  # /v1/judge reports no usage, so it does not count


@pytest.mark.parametrize("model_class", [LengthModel, NoTokenizerModel])
def test_classify_usage_without_a_tokenizer_is_characters_over_4(model_class):
    pairs = [{"prompt": "x" * 10, "response_a": "y" * 7, "response_b": ["z", None]},  # 18 characters: 5 tokens
             {"prompt": "p", "response_a": "a", "response_b": "b"}]  # 3 characters: 1 token
    with TestClient(create_app(model_class(), ServeSettings())) as c:
        usage = c.post("/classify", json={"input": pairs}).json()["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"] == 6 and usage["approximate"] is True


def test_classify_accepts_sglangs_default_model_name(client, model):
    pair = {"prompt": "hi", "response_a": "hello there", "response_b": "hey"}
    r = client.post("/classify", json={"model": "default", "input": pair})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "length"
    assert r.json()["data"][0]["probs"] == pytest.approx(model.expected([rec("hi", "hello there", "hey")], True)[0])


def test_classify_use_activation_false_returns_raw_scores_like_vllm(client, model):
    pair = {"prompt": "hi", "response_a": "hello there", "response_b": "hey"}
    expected = model.expected([rec("hi", "hello there", "hey")], True)[0]
    probs = client.post("/classify", json={"input": pair, "use_activation": True}).json()["data"][0]
    raw = client.post("/classify", json={"input": pair, "use_activation": False}).json()["data"][0]
    assert probs["probs"] == pytest.approx(expected)
    assert raw["probs"] == pytest.approx(np.log(expected))  # log-probabilities: logits up to a constant
    softmax = np.exp(raw["probs"]) / np.exp(raw["probs"]).sum()
    assert softmax == pytest.approx(expected) and raw["label"] == probs["label"] and raw["num_classes"] == 3
    r = client.post("/classify", json={"input": pair, "activation": False})  # vLLM's old name
    assert r.status_code == 422 and "use_activation" in r.json()["error"]["message"]


def test_classify_rejects_other_models_and_undecodable_inputs(client):
    pair = {"prompt": "hi", "response_a": "a", "response_b": "b"}
    r = client.post("/classify", json={"model": "gpt-9", "input": [pair]})
    assert r.status_code == 404 and "`length`" in r.json()["error"]["message"]
    r = client.post("/classify", json={"model": "length", "input": ["just some text"]})
    assert r.status_code == 422 and "input[0]" in r.json()["error"]["message"]
    r = client.post("/classify", json={"model": "length", "input": [json.dumps({"prompt": "p", "response_a": "a"})]})
    assert r.status_code == 422 and "response_b" in r.json()["error"]["message"]
    r = client.post("/classify", json={"model": "length", "input": [[101, 2023, 102]]})  # token ids
    assert r.status_code == 422


# --- info endpoints, page, docs -----------------------------------------------------------------------
def test_models_reports_id_labels_version_and_calibration(model, tmp_path):
    (tmp_path / "arenapref.json").write_text(json.dumps({"family": "length", "labels": list(LABELS), "n_train": 12,
                                                         "arenapref_version": "0.1.0", "saved_at": "2026-01-02T03:04:05+00:00"}))
    (tmp_path / "calibration.json").write_text(json.dumps({"kind": "temperature_bias", "inverse_t": 0.8}))
    with TestClient(create_app(model, ServeSettings(model_id="m1", model_dir=tmp_path))) as c:
        (info,) = c.get("/v1/models").json()["data"]
        health = c.get("/healthz")
    assert info["id"] == "m1" and info["labels"] == list(LABELS) and info["family"] == "length"
    assert info["calibration"] == {"kind": "temperature_bias", "inverse_t": 0.8}
    assert info["n_train"] == 12 and info["version"] and info["created"] == 1767323045
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_models_without_calibration_says_none(client):
    assert client.get("/v1/models").json()["data"][0]["calibration"] is None


def test_page_and_docs_are_served_without_external_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    html = page.text
    assert 'id="prompt"' in html and 'id="p-a"' in html and 'id="p-tie"' in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the page must not load anything from elsewhere"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/judge", "/classify", "/v1/models", "/healthz"} <= set(paths)


def test_docs_reference_only_assets_this_server_serves(model):
    with TestClient(create_app(model, ServeSettings(token=TOKEN))) as c:  # the docs need no token
        docs = c.get("/docs")
        assert docs.status_code == 200
        html = docs.text
        assert not re.search(r"https?:|//[a-z]", html), "the docs page must not load anything from elsewhere"
        assert "'none'" in docs.headers["content-security-policy"]  # and the browser is told so
        refs = re.findall(r"""(?:src|href)=["']([^"']+)""", html) + re.findall(r"url: '([^']+)'", html)
        assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css", "/openapi.json"} <= set(refs)
        for ref in refs:
            asset = c.get(ref)
            assert asset.status_code == 200, ref
        script = c.get("/docs/assets/swagger-ui-bundle.js")
        assert "javascript" in script.headers["content-type"] and len(script.content) > 500_000
        assert "SwaggerUIBundle" in script.text
        assert c.get("/docs/oauth2-redirect").status_code == 200
        assert c.get("/v1/models").status_code == 401  # the API itself still needs the token


# --- limits ---------------------------------------------------------------------------------------
@pytest.fixture
def tight(model):
    settings = ServeSettings(max_body_bytes=2000, max_pairs=3, max_turns=2, max_chars=50)
    with TestClient(create_app(model, settings)) as c:
        yield c


def _error(r, status: int, limit: str) -> str:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["limit"] == limit and limit in error["message"]
    return error["message"]


def test_body_over_the_limit_is_413(tight):
    big = {"prompt": "p", "response_a": "a" * 3000, "response_b": "b"}
    message = _error(tight.post("/v1/judge", json=big), 413, "max_body_bytes")
    assert "2000 bytes" in message
    chunked = (part for part in [b'{"prompt": "p", "response_a": "', b"a" * 3000, b'", "response_b": "b"}'])
    _error(tight.post("/v1/judge", content=chunked, headers={"content-type": "application/json"}), 413, "max_body_bytes")


def test_too_many_pairs_is_413(tight):
    pairs = [{"prompt": "p", "response_a": "a", "response_b": "b"}] * 4
    assert "4 pairs" in _error(tight.post("/v1/judge", json={"pairs": pairs}), 413, "max_pairs")
    _error(tight.post("/classify", json={"input": pairs}), 413, "max_pairs")


def test_too_many_turns_or_characters_is_422_naming_the_field(tight):
    turns = {"prompt": ["1", "2", "3"], "response_a": "a", "response_b": "b"}
    message = _error(tight.post("/v1/judge", json=turns), 422, "max_turns")
    assert "pairs[0].prompt has 3 turns" in message
    chars = {"pairs": [{"prompt": "p", "response_a": "a", "response_b": "b"},
                       {"prompt": "p", "response_a": ["x" * 30, "y" * 30], "response_b": "b"}]}
    message = _error(tight.post("/v1/judge", json=chars), 422, "max_chars")
    assert "pairs[1].response_a has 60 characters" in message


def test_a_request_not_scored_in_time_is_504():
    slow = LengthModel(delay=1.0)
    with TestClient(create_app(slow, ServeSettings(request_timeout_s=0.2))) as c:
        r = c.post("/v1/judge", json={"prompt": "p", "response_a": "a", "response_b": "b"})
    _error(r, 504, "request_timeout_s")


# --- auth and logs --------------------------------------------------------------------------------
def test_bearer_token_is_required_and_never_logged(model, caplog):
    caplog.set_level(logging.INFO, logger="arenapref.serve")
    pair = {"prompt": "a private question", "response_a": "a", "response_b": "b"}
    with TestClient(create_app(model, ServeSettings(token=TOKEN))) as c:
        missing = c.post("/v1/judge", json=pair)
        wrong = c.post("/v1/judge", json=pair, headers={"authorization": "Bearer nope"})
        models = c.get("/v1/models")
        ok = c.post("/v1/judge", json=pair, headers={"authorization": f"Bearer {TOKEN}"})
        health, page = c.get("/healthz"), c.get("/")
    for r in (missing, wrong, models):
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["type"] == "authentication_error"
    assert ok.status_code == 200 and health.status_code == 200 and page.status_code == 200
    assert len(model.calls) == 1  # the rejected requests never reached the model
    assert TOKEN not in caplog.text and "private question" not in caplog.text
    assert all(TOKEN not in r.text for r in (missing, wrong, models, ok, health, page))


def test_the_bearer_scheme_is_case_insensitive(model):
    pair = {"prompt": "p", "response_a": "a", "response_b": "b"}
    with TestClient(create_app(model, ServeSettings(token=TOKEN))) as c:
        for header in (f"bearer {TOKEN}", f"BEARER {TOKEN}", f"Bearer  {TOKEN}"):
            assert c.post("/v1/judge", json=pair, headers={"authorization": header}).status_code == 200, header
        for header in (f"Basic {TOKEN}", f"bearer {TOKEN}x", "bearer", TOKEN, f"Bearer{TOKEN}"):
            assert c.post("/v1/judge", json=pair, headers={"authorization": header}).status_code == 401, header


def test_token_comes_from_a_file_or_the_environment(tmp_path):
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")
    assert resolve_token(path, {}).get_secret_value() == TOKEN
    assert resolve_token(None, {"ARENAPREF_TOKEN": "from-env"}).get_secret_value() == "from-env"
    assert resolve_token(None, {}) is None
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        resolve_token(path, {})
    assert TOKEN not in repr(ServeSettings(token=TOKEN))


def test_access_log_is_one_json_line_per_request_without_bodies(client, caplog):
    caplog.set_level(logging.INFO, logger="arenapref.serve")
    client.post("/v1/judge", json={"pairs": [{"prompt": "my secret prompt", "response_a": "a", "response_b": "b"}] * 2},
                headers={"x-request-id": "req-42"})
    client.get("/?prompt=also+secret")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "arenapref.serve"]
    requests = [line for line in lines if line["event"] == "request"]
    judge, page = requests[-2], requests[-1]
    assert judge["request_id"] == "req-42" and judge["method"] == "POST" and judge["path"] == "/v1/judge"
    assert judge["status"] == 200 and judge["pairs"] == 2 and judge["latency_ms"] >= 0
    assert page["path"] == "/" and page["pairs"] == 0
    assert "secret" not in caplog.text


def test_internal_error_is_a_generic_500_with_a_request_id(model, caplog):
    caplog.set_level(logging.INFO, logger="arenapref.serve")
    with TestClient(create_app(model, ServeSettings())) as c:
        r = c.post("/v1/judge", json={"prompt": "boom", "response_a": "a", "response_b": "b"})
        after = c.post("/v1/judge", json={"prompt": "fine", "response_a": "a", "response_b": "b"})
    assert r.status_code == 500
    body = r.json()
    assert body["error"]["type"] == "internal_error" and body["request_id"] == r.headers["x-request-id"]
    assert body["request_id"] in body["error"]["message"]
    for leak in ("Traceback", "RuntimeError", "exploded", "/secret/path", ".py"):
        assert leak not in r.text
    errors = [json.loads(x.getMessage()) for x in caplog.records if '"event": "error"' in x.getMessage()]
    assert errors and errors[0]["request_id"] == body["request_id"]  # the operator can find it
    assert after.status_code == 200  # the server goes on serving


# --- micro-batching -------------------------------------------------------------------------------
async def _concurrent_judge(app, pairs: list[dict]) -> list:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await asyncio.gather(*(c.post("/v1/judge", json=p | {"swap": i % 2 == 0}) for i, p in enumerate(pairs)))


def _pairs(n: int) -> list[dict]:
    return [{"prompt": f"q{i}", "response_a": "a" * (i + 1), "response_b": "b" * (2 * n - i)} for i in range(n)]


def test_concurrent_requests_are_scored_together_and_each_gets_its_own_answer():
    slow = LengthModel(delay=0.05)
    pairs = _pairs(16)
    app = create_app(slow, ServeSettings(max_batch=64, max_wait_ms=20))
    responses = asyncio.run(_concurrent_judge(app, pairs))
    assert all(r.status_code == 200 for r in responses)
    assert len(slow.calls) < len(pairs) / 2, slow.calls  # mixed swap settings: at most two calls per batch
    assert sum(n for n, _ in slow.calls) == len(pairs)
    for i, (pair, r) in enumerate(zip(pairs, responses)):
        expected = slow.expected([rec(pair["prompt"], pair["response_a"], pair["response_b"])], i % 2 == 0)[0]
        assert probs_of(r.json()["results"][0]) == pytest.approx(expected)


def test_without_batching_every_request_is_its_own_model_call():
    slow = LengthModel(delay=0.01)
    app = create_app(slow, ServeSettings(batching=False))
    responses = asyncio.run(_concurrent_judge(app, _pairs(8)))
    assert all(r.status_code == 200 for r in responses)
    assert [n for n, _ in slow.calls] == [1] * 8


def test_one_failing_request_does_not_fail_the_others_in_its_batch():
    slow = LengthModel(delay=0.02)
    pairs = _pairs(6)
    pairs[3] = {"prompt": "boom", "response_a": "a", "response_b": "b"}
    responses = asyncio.run(_concurrent_judge(create_app(slow, ServeSettings(max_wait_ms=50)), pairs))
    assert [r.status_code for r in responses] == [200, 200, 200, 500, 200, 200]


def test_a_request_that_timed_out_stops_using_the_scoring_thread():
    """A 20-pair request in chunks of 2 would hold the one scoring thread for 2.5 s; once it has answered 504
    its remaining chunks are skipped, so the next request is scored in time."""
    slow = LengthModel(delay=0.25)
    big = {"pairs": [{"prompt": f"q{i}", "response_a": "a", "response_b": "b"} for i in range(20)], "swap": False}
    with TestClient(create_app(slow, ServeSettings(max_batch=2, request_timeout_s=1.0))) as c:
        first = c.post("/v1/judge", json=big)
        second = c.post("/v1/judge", json={"prompt": "p", "response_a": "a", "response_b": "b", "swap": False})
        batching = c.get("/healthz").json()["batching"]
    assert first.status_code == 504 and second.status_code == 200, second.text
    assert sum(n for n, _ in slow.calls) <= 12, slow.calls  # at most 5 chunks of the big one, then the small one
    assert batching["dropped_requests"] == 1 and batching["skipped_pairs"] >= 8


def test_a_request_that_gives_up_in_the_queue_frees_its_place_and_is_never_scored():
    release, seen = threading.Event(), []

    def score(items):
        seen.extend(items)
        release.wait(5)
        return np.zeros((len(items), 3))

    async def go():
        batcher = MicroBatcher(score, max_batch=8, max_wait_ms=0, max_queue=3)
        await batcher.start()
        busy = asyncio.ensure_future(batcher.submit(["busy"]))  # holds the scoring thread
        await asyncio.sleep(0.05)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batcher.submit(["late-1", "late-2"]), 0.05)
        after = asyncio.ensure_future(batcher.submit(["next-1", "next-2"]))  # 2 + 2 > 3 if "late" still counted
        await asyncio.sleep(0.02)
        release.set()
        await busy
        rows = await after
        await batcher.stop()
        return rows, batcher.stats

    rows, stats = asyncio.run(go())
    assert len(rows) == 2 and seen == ["busy", "next-1", "next-2"]
    assert stats.dropped_requests == 1 and stats.skipped_pairs == 2


def test_batcher_respects_max_batch_and_keeps_order():
    sizes = []

    def score(items):
        sizes.append(len(items))
        return np.array([[x, 0.0, 0.0] for x in items])

    async def go():
        batcher = MicroBatcher(score, max_batch=4, max_wait_ms=20)
        await batcher.start()
        jobs = [list(range(10 * j, 10 * j + n)) for j, n in enumerate([3, 3, 1, 10, 2])]
        results = await asyncio.gather(*(batcher.submit(job) for job in jobs))
        await batcher.stop()
        return jobs, results

    jobs, results = asyncio.run(go())
    for job, result in zip(jobs, results):
        assert result[:, 0].tolist() == job
    assert max(sizes) <= 4 and sum(sizes) == 19


# --- a real server ---------------------------------------------------------------------------------
class ThreadedServer:
    """uvicorn on 127.0.0.1, a port the OS picks, in a thread, as serve.server configures it (the header timeout);
    stops (gracefully) on exit."""

    def __init__(self, app):
        config = server_config(app, app.state.settings, host="127.0.0.1", port=0, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ThreadedServer":
        self.thread.start()
        for _ in range(200):  # at most 10 s
            if self.server.started:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("uvicorn did not start within 10 s")
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


def test_shutdown_lets_in_flight_requests_finish():
    slow = LengthModel(delay=1.0)
    app = create_app(slow, ServeSettings())
    result = {}
    with ThreadedServer(app) as server:
        def call():
            result["r"] = httpx.post(server.url + "/v1/judge", json={"prompt": "p", "response_a": "a", "response_b": "b"},
                                     timeout=30)

        caller = threading.Thread(target=call)
        caller.start()
        for _ in range(200):
            if slow.calls:
                break
            time.sleep(0.01)
        assert slow.calls, "the request never reached the model"
    caller.join(timeout=30)
    assert result["r"].status_code == 200


def read_until_closed(sock: socket.socket, within: float) -> bytes:
    """Everything the server sends until it closes the connection; fails if it is still open after `within` s."""
    sock.settimeout(within)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    except socket.timeout:
        pytest.fail(f"the server kept the connection open for {within} s; it sent {received[:200]!r}")
    finally:
        sock.close()
    return received


def test_slow_request_headers_are_cut_off_and_counted():
    """Slowloris: ten clients send their request line and headers a few bytes at a time and never finish. Each is
    answered 408 and disconnected once header_timeout_s has passed since its first byte, however steadily it
    trickles; a connection that sends nothing at all is closed too. Other clients are served meanwhile."""
    app = create_app(LengthModel(), ServeSettings(header_timeout_s=0.6))
    with ThreadedServer(app) as server:
        slow = [server.connect() for _ in range(10)]
        idle = server.connect()
        for sock in slow:
            sock.sendall(b"POST /v1/judge HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(3):  # still sending, well inside the limit
            time.sleep(0.12)
            for sock in slow:
                sock.sendall(b"X-Slow: 1\r\n")
        ok = httpx.post(server.url + "/v1/judge", json={"prompt": "p", "response_a": "a", "response_b": "b"}, timeout=5)
        answers = [read_until_closed(sock, within=3.0) for sock in slow]
        assert read_until_closed(idle, within=3.0) == b""
        counts = httpx.get(server.url + "/healthz", timeout=5).json()["slow_clients"]
    assert ok.status_code == 200
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 ") and b"header_timeout_s" in answer and b"connection: close" in answer
    assert counts["header_timeouts"] == 10 and counts["idle_connections_closed"] >= 1
    assert counts["header_timeout_s"] == 0.6


def test_a_slow_body_gets_408_the_connection_closed_and_is_counted():
    model = LengthModel()
    app = create_app(model, ServeSettings(body_timeout_s=0.5, request_timeout_s=30))
    with ThreadedServer(app) as server:
        sock = server.connect()
        sock.sendall(b"POST /v1/judge HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 200\r\n\r\n{\"prompt\": ")  # 11 of the 200 bytes promised
        answer = read_until_closed(sock, within=5.0)
        counts = httpx.get(server.url + "/healthz", timeout=5).json()["slow_clients"]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head.lower()
    assert json.loads(body)["error"]["limit"] == "body_timeout_s"
    assert counts["body_timeouts"] == 1 and counts["body_timeout_s"] == 0.5
    assert model.calls == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def trained_model_dir(shared_data, tmp_path_factory) -> Path:
    from arenapref.config import FeaturesConfig
    from arenapref.data.io import read_pairs
    from arenapref.models import build_model

    records, _ = read_pairs([shared_data / "pandalm"])
    model = build_model(FeaturesConfig(n_estimators=20, tfidf_max_features=2000, svd_components=8, n_jobs=1))
    return model.fit(records[:400]).save(tmp_path_factory.mktemp("served") / "pandalm-features")


@pytest.mark.slow
def test_cli_serves_a_trained_model_on_loopback_and_stops_cleanly(trained_model_dir, tmp_path):
    port = _free_port()
    log_path = tmp_path / "server.log"
    env = {**os.environ, "ARENAPREF_TOKEN": TOKEN}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "arenapref.cli", "serve", str(trained_model_dir),
                                 "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(120):  # at most 60 s for the import and model load
                assert proc.poll() is None, log_path.read_text()
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            else:
                pytest.fail(f"server did not answer /healthz within 60 s:\n{log_path.read_text()}")
            pair = {"prompt": ["Name a colour."], "response_a": ["Blue."], "response_b": ["I'd rather not."]}
            auth = {"authorization": f"Bearer {TOKEN}"}
            assert httpx.post(url + "/v1/judge", json=pair, timeout=30).status_code == 401
            r = httpx.post(url + "/v1/judge", json={"pairs": [pair, pair]}, headers=auth, timeout=30)
            assert r.status_code == 200, r.text
            results = r.json()["results"]
            assert len(results) == 2 and probs_of(results[0]) == pytest.approx(probs_of(results[1]))
            assert sum(probs_of(results[0])) == pytest.approx(1.0)
            info = httpx.get(url + "/v1/models", headers=auth, timeout=10).json()["data"][0]
            assert info["id"] == "pandalm-features" and info["family"] == "features"
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=30)
    assert code == 0
    logged = log_path.read_text()
    assert TOKEN not in logged
    access = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    judged = [a for a in access if a.get("event") == "request" and a["path"] == "/v1/judge"]
    assert [a["status"] for a in judged] == [401, 200] and judged[-1]["pairs"] == 2


def test_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    with pytest.raises(ImportError, match=r"arenapref\[serve\]"):
        require_serve_extra()


# --- the page in a real browser --------------------------------------------------------------------
def test_page_shows_the_three_probabilities_in_headless_chromium(tmp_path):
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing on CI; .ci/run is expected to install Debian's chromium package")
        pytest.skip(f"{CHROMIUM} not found (install Debian's `chromium` package to run the browser test)")
    model = LengthModel()
    pair = ("Which is bigger, 2 or 3?", "3 is bigger.", "Both are the same size, probably.")
    expected = model.expected([rec(*pair)], True)[0]
    with ThreadedServer(create_app(model, ServeSettings())) as server:
        query = urlencode({"prompt": pair[0], "a": pair[1], "b": pair[2], "submit": "1"})
        cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
               f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
               f"{server.url}/?{query}"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    dom = done.stdout
    assert 'data-state="done"' in dom, f"the page never showed a result:\n{dom[-3000:]}\n{done.stderr[-2000:]}"
    shown = [float(re.search(rf'id="p-{k}">([0-9.]+)<', dom).group(1)) for k in ("a", "b", "tie")]
    assert shown == pytest.approx(expected, abs=6e-4)  # the page rounds to 3 decimals
    assert model.seen[-1].prompt == (pair[0],) and model.seen[-1].response_b == (pair[2],)
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_docs_render_in_headless_chromium_from_local_assets(tmp_path):
    """Swagger UI draws the API from /openapi.json with only this server's files: the page's CSP forbids
    anything else, and Chromium runs without network access to other hosts here."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing on CI; .ci/run is expected to install Debian's chromium package")
        pytest.skip(f"{CHROMIUM} not found (install Debian's `chromium` package to run the browser test)")
    with ThreadedServer(create_app(LengthModel(), ServeSettings())) as server:
        cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
               f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000", "--dump-dom",
               f"{server.url}/docs"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    dom = done.stdout
    assert "opblock-summary-path" in dom, f"Swagger UI did not render:\n{dom[-3000:]}\n{done.stderr[-2000:]}"
    for path in ("/v1/judge", "/classify", "/v1/models", "/healthz"):
        assert f'data-path="{path}"' in dom, path
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
