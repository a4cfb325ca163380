"""Request and response bodies, and the checks that turn a request's pairs into PairRecords.

A pair's prompt and responses are lists of turns (`["hi", "and then?"]`) or a plain string for one turn.
`null` turns become "" and unpaired UTF-16 surrogate escapes are repaired, as the file readers do.
"""

from __future__ import annotations

import json
import math
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from arenapref.data.arena import repair_surrogates
from arenapref.data.record import LABELS, PairRecord
from arenapref.serve.settings import ServeSettings

Turns = Union[str, list[Union[str, None]]]
TURN_FIELDS = ("prompt", "response_a", "response_b")


class ApiError(Exception):
    """An error answered as {"error": {"message", "type", "code", "limit"}}; `limit` names the setting hit."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", limit: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.limit = status, message, type, limit


class Pair(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"prompt": "What is 2+2?", "response_a": "4", "response_b": "It is 4, because 2+2=4."}]})

    id: str | None = Field(None, description="echoed back in the result")
    prompt: Turns = Field(..., description="user turns: a list of strings, or one string for a single turn")
    response_a: Turns = Field(..., description="assistant turns of model A")
    response_b: Turns = Field(..., description="assistant turns of model B")


class JudgeRequest(BaseModel):
    """One pair (prompt, response_a, response_b at the top level) or several (`pairs`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"prompt": "What is 2+2?", "response_a": "4", "response_b": "5", "swap": True},
        {"pairs": [{"id": "q1", "prompt": ["Hi", "Name a colour"], "response_a": ["Hello!", "Blue"],
                    "response_b": ["Hey", "I can't"]}]},
    ]})

    pairs: list[Pair] | None = Field(None, description="several pairs; results come back in the same order")
    id: str | None = None
    prompt: Turns | None = None
    response_a: Turns | None = None
    response_b: Turns | None = None
    swap: bool | None = Field(None, description="score both A/B orders and average; default: the model's own setting")

    @model_validator(mode="after")
    def one_or_many(self) -> "JudgeRequest":
        single = [f for f in TURN_FIELDS if getattr(self, f) is not None]
        if self.pairs is not None and (single or self.id is not None):
            raise ValueError("give either `pairs` or one pair's prompt/response_a/response_b, not both")
        if self.pairs is None and len(single) < 3:
            missing = [f for f in TURN_FIELDS if getattr(self, f) is None]
            raise ValueError(f"missing {missing}: give prompt, response_a and response_b, or a list `pairs`")
        return self

    def pair_list(self) -> list[Pair]:
        if self.pairs is not None:
            return self.pairs
        return [Pair(id=self.id, prompt=self.prompt, response_a=self.response_a, response_b=self.response_b)]


class Judgement(BaseModel):
    index: int
    id: str | None = None
    winner_model_a: float = Field(..., description="P(A wins)")
    winner_model_b: float = Field(..., description="P(B wins)")
    winner_tie: float = Field(..., description="P(tie)")
    label: str = Field(..., description="the most probable of the three labels")


class JudgeResponse(BaseModel):
    model: str
    labels: list[str] = Field(default=list(LABELS))
    swap: bool
    results: list[Judgement]


# --- /classify, in the shape vLLM and SGLang use for classification models -------------------------
CLASSIFY_INPUT_DOC = (
    "One pair or a list of pairs. Each pair is a JSON object {\"prompt\", \"response_a\", \"response_b\"} (turns as "
    "lists of strings or plain strings), or a string holding that object as JSON, for clients that can only "
    "send strings. Token-id inputs are not supported."
)


SGLANG_DEFAULT_MODEL = "default"  # what SGLang's clients send when no model is named
USE_ACTIVATION_DOC = (
    "vLLM's switch: true or absent returns probabilities; false returns raw scores, as vLLM returns a classifier's "
    "logits. arenapref's models give probabilities, so the raw scores are their natural logarithms (floored at "
    "log of the smallest float, -708): logits up to a constant per pair, and softmax(raw) gives `probs` back. "
    "`label` is the same either way."
)


class ClassifyRequest(BaseModel):
    # vLLM and SGLang accept more fields (user, priority, truncate_prompt_tokens, rid, ...); they mean nothing here.
    model_config = ConfigDict(extra="ignore", protected_namespaces=(), json_schema_extra={"examples": [
        {"model": "arenapref", "input": [{"prompt": "What is 2+2?", "response_a": "4", "response_b": "5"}]},
        {"model": "arenapref", "input": ["{\"prompt\": \"Hi\", \"response_a\": \"Hello!\", \"response_b\": \"Hey\"}"]},
    ]})

    model: str | None = Field(None, description=f"the served model's id, or `{SGLANG_DEFAULT_MODEL}` (SGLang's "
                                                "default name); may be left out")
    input: Union[Pair, str, list[Union[Pair, str]]] = Field(..., description=CLASSIFY_INPUT_DOC)
    use_activation: bool | None = Field(None, description=USE_ACTIVATION_DOC)
    swap: bool | None = Field(None, description="arenapref extension: average both A/B orders")

    @model_validator(mode="before")
    @classmethod
    def renamed_switches(cls, data: Any) -> Any:
        # vLLM's older names for use_activation; ignoring them silently would return the wrong kind of score.
        for old in ("activation", "softmax"):
            if isinstance(data, dict) and old in data:
                raise ValueError(f"`{old}` is vLLM's old name for `use_activation`; send `use_activation` instead")
        return data

    def pair_list(self) -> list[Pair]:
        """The pairs, in order; an empty input (or an empty string) is a 400, as SGLang answers it."""
        items = self.input if isinstance(self.input, list) else [self.input]
        if not items:
            raise ApiError(400, "input cannot be empty: send one pair or a list of pairs")
        for i, item in enumerate(items):
            if isinstance(item, str) and not item.strip():
                where = f"input[{i}]" if isinstance(self.input, list) else "input"
                raise ApiError(400, f"{where} cannot be empty or whitespace only")
        return [item if isinstance(item, Pair) else _pair_from_string(item, i) for i, item in enumerate(items)]


def _pair_from_string(text: str, index: int) -> Pair:
    shape = 'a JSON object {"prompt": ..., "response_a": ..., "response_b": ...}'
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ApiError(422, f"input[{index}]: a string input must hold {shape}; it is not JSON") from None
    if not isinstance(value, dict):
        raise ApiError(422, f"input[{index}]: a string input must hold {shape}; got JSON {type(value).__name__}")
    try:
        return Pair.model_validate(value)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(422, f"input[{index}].{where}: {first['msg']}") from None


class ClassifyData(BaseModel):
    index: int
    label: str
    probs: list[float] = Field(..., description="P(A), P(B), P(tie); with use_activation=false their logarithms")
    num_classes: int = 3


CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text and BPE tokenizers


def approximate_tokens(record: PairRecord) -> int:
    """Tokens of a pair when the model has no tokenizer: its characters (prompt and both responses, all turns)
    divided by 4, rounded up."""
    chars = sum(len(turn) for name in TURN_FIELDS for turn in getattr(record, name))
    return math.ceil(chars / CHARS_PER_TOKEN)


class ClassifyUsage(BaseModel):
    prompt_tokens: int = Field(0, description="tokens of all pairs as the model's tokenizer counts them "
                                              "(model.count_tokens), once per pair even when `swap` scores both "
                                              "orders; for a model without a tokenizer, characters / 4 rounded up "
                                              "per pair (then `approximate` is true)")
    total_tokens: int = Field(0, description="= prompt_tokens: classification generates nothing")
    completion_tokens: int = 0
    prompt_tokens_details: Any = None
    approximate: bool = Field(False, description="arenapref extension: true when the counts are the characters / 4 "
                                                 "estimate rather than the model's tokenizer")


class ClassifyResponse(BaseModel):
    id: str
    object: str = "list"
    created: int
    model: str
    data: list[ClassifyData]
    usage: ClassifyUsage = Field(default_factory=ClassifyUsage)


# --- limits --------------------------------------------------------------------------------------
def check_pair_count(n: int, settings: ServeSettings) -> None:
    if n > settings.max_pairs:
        raise ApiError(413, f"{n} pairs in one request; the limit is {settings.max_pairs} pairs per request (max_pairs)",
                       limit="max_pairs")


def to_records(pairs: list[Pair], settings: ServeSettings, where: str = "pairs") -> list[PairRecord]:
    """Pairs -> records, enforcing the per-field limits; 422 naming the pair, the field and the limit."""
    check_pair_count(len(pairs), settings)
    records = []
    for i, pair in enumerate(pairs):
        fields = {}
        for name in TURN_FIELDS:
            value = getattr(pair, name)
            turns = [value] if isinstance(value, str) else value
            at = f"{where}[{i}].{name}"
            if not turns:
                raise ApiError(422, f"{at} has no turns; send at least one string")
            if len(turns) > settings.max_turns:
                raise ApiError(422, f"{at} has {len(turns)} turns; the limit is {settings.max_turns} turns per field "
                                    "(max_turns)", limit="max_turns")
            turns = [repair_surrogates(t or "")[0] for t in turns]
            chars = sum(map(len, turns))
            if chars > settings.max_chars:
                raise ApiError(422, f"{at} has {chars} characters; the limit is {settings.max_chars} characters per "
                                    "field, all turns together (max_chars)", limit="max_chars")
            fields[name] = tuple(turns)
        records.append(PairRecord(id=pair.id if pair.id is not None else str(i), source="serve", **fields))
    return records
