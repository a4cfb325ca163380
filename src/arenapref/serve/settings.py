"""The server's typed settings (every `arenapref serve` option), and where the bearer token comes from."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

TOKEN_ENV = "ARENAPREF_TOKEN"


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    model_id: str = Field("arenapref", description="name reported by /v1/models and expected in /classify's `model`")
    model_dir: Path | None = Field(None, description="where arenapref.json and calibration.json are read for /v1/models")

    batching: bool = Field(True, description="score concurrent requests together in one model call")
    max_batch: int = Field(64, ge=1, description="most pairs in one model call")
    max_wait_ms: float = Field(5.0, ge=0, description="longest a request waits for others to join its batch")
    max_queue_pairs: int = Field(8192, ge=1, description="pairs waiting to be scored before new requests get 503")

    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1)
    max_pairs: int = Field(256, ge=1, description="pairs per request")
    max_turns: int = Field(64, ge=1, description="turns per field (prompt, response_a, response_b)")
    max_chars: int = Field(100_000, ge=1, description="characters per field, all its turns together")
    request_timeout_s: float = Field(30.0, gt=0, description="waiting for the scores (504 past it); also the body's "
                                     "limit unless body_timeout_s is set")
    body_timeout_s: float | None = Field(None, gt=0, description="receiving the whole body (408 and the connection "
                                         "closed past it); None: request_timeout_s")
    header_timeout_s: float = Field(10.0, gt=0, description="receiving the request line and headers, from the first "
                                    "byte of a request or the opening of a connection (the connection is closed past "
                                    "it); enforced by the protocol of serve.server, so only when served through it")

    token: SecretStr | None = Field(None, description="bearer token required on the API; None: no auth")

    @property
    def body_timeout(self) -> float:
        return self.request_timeout_s if self.body_timeout_s is None else self.body_timeout_s


def resolve_token(token_file: Path | None, environ: dict[str, str] | None = None) -> SecretStr | None:
    """The token from --token-file, else from $ARENAPREF_TOKEN, else None (no auth)."""
    environ = os.environ if environ is None else environ
    if token_file is not None:
        token = Path(token_file).read_text(encoding="utf-8").strip()
        if not token:
            raise ValueError(f"token file {token_file} is empty")
        return SecretStr(token)
    token = environ.get(TOKEN_ENV, "").strip()
    return SecretStr(token) if token else None
