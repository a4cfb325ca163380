"""Load test of `arenapref serve`: throughput, latency percentiles and errors at several concurrency levels.

Either point it at a running server (`--url http://127.0.0.1:8000`) or let it start one per model and mode
(`--model NAME=DIR`, with micro-batching on and/or off). Loopback only: it refuses any other host. Every
level is bounded by a request count and by seconds; each request is one pair, as a chat front end sends them.

    .venv/bin/python scripts/loadtest.py --model features=runs/m --concurrency 1 8 32 --requests 400 \
        --modes on off --soak 10000 --benchmarks BENCHMARKS.md

By default every request's texts are unique (a counter is appended), so the `embed` model's embedding cache
cannot turn the test into a cache benchmark; `--repeat` sends the data's pairs as they are.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import itertools
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
from benchblock import cpu_name, ram_gib, replace_block  # scripts/ is on sys.path when a script runs

REPO = Path(__file__).resolve().parents[1]
MAX_REQUESTS = 20_000
MAX_SECONDS = 600


def loopback_url(url: str) -> str:
    host = urlparse(url).hostname or ""
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        sys.exit(f"refusing {url}: the load test only talks to loopback hosts (127.0.0.1, ::1, localhost)")
    return url.rstrip("/")


def load_pairs(data: Path, limit: int = 2000) -> list[dict]:
    pairs = []
    if data.exists():
        from arenapref.data.io import read_pairs

        records, _ = read_pairs([data], "auto", None, strict=False)
        pairs = [{"prompt": list(r.prompt), "response_a": list(r.response_a), "response_b": list(r.response_b)}
                 for r in records[:limit]]
    if not pairs:  # no data folder: synthetic pairs of varied length
        rng = np.random.default_rng(0)
        words = "the model answer is clear short long because list code example however first then".split()
        for i in range(500):
            say = lambda n: " ".join(rng.choice(words, n))  # noqa: E731
            pairs.append({"prompt": [say(12)], "response_a": [say(int(rng.integers(5, 200)))],
                          "response_b": [say(int(rng.integers(5, 200)))]})
    return pairs


def make_body(pairs: list[dict], i: int, unique: bool, endpoint: str) -> bytes:
    pair = pairs[i % len(pairs)]
    if unique:
        tag = f" [{i}]"
        pair = {k: [*turns[:-1], turns[-1] + tag] for k, turns in pair.items()}
    body = pair if endpoint == "judge" else {"input": [pair]}
    return json.dumps(body).encode()


async def run_level(url: str, endpoint: str, pairs, concurrency: int, n: int, seconds: float, unique: bool,
                    headers: dict, offset: int) -> dict:
    path = "/v1/judge" if endpoint == "judge" else "/classify"
    latencies, errors = [], Counter()
    counter = itertools.count()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60, headers=headers) as client:
        before = (await client.get("/healthz")).json()["batching"]
        deadline = time.perf_counter() + seconds

        async def worker():
            while True:
                i = next(counter)
                if i >= n or time.perf_counter() > deadline:
                    return
                body = make_body(pairs, offset + i, unique, endpoint)
                t = time.perf_counter()
                try:
                    r = await client.post(path, content=body, headers={"content-type": "application/json",
                                                                       "x-request-id": f"lt{offset}-{i}"})
                except httpx.HTTPError as e:
                    errors[type(e).__name__] += 1
                    continue
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t)
                else:
                    errors[f"HTTP {r.status_code}"] += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
        after = (await client.get("/healthz")).json()["batching"]
    calls = after["model_calls"] - before["model_calls"]
    scored = after["pairs"] - before["pairs"]
    ms = np.array(latencies) * 1000
    pct = (lambda q: float(np.percentile(ms, q))) if len(ms) else (lambda q: float("nan"))
    return {"offset": offset, "concurrency": concurrency, "requests": len(latencies) + sum(errors.values()), "ok": len(latencies),
            "errors": dict(errors), "wall_s": wall, "rps": len(latencies) / wall if wall else 0.0,
            "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99), "max_ms": float(ms.max()) if len(ms) else float("nan"),
            "mean_batch": scored / calls if calls else 0.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`arenapref serve` in a subprocess on a free loopback port, with a fresh embedding cache."""

    def __init__(self, model_dir: Path, batching: bool, workdir: Path, extra: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-m", "arenapref.cli", "serve", str(model_dir), "--host", "127.0.0.1",
                    "--port", str(self.port), "--batching" if batching else "--no-batching", *extra]
        self.log_path = workdir / f"server-{self.port}.log"
        self.cache = workdir / f"cache-{self.port}"

    def __enter__(self) -> "Server":
        env = {**os.environ, "ARENAPREF_CACHE": str(self.cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        for _ in range(240):  # up to 120 s: the embed model imports torch and loads its encoder
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"server did not answer /healthz within 120 s; log: {self.log_path}")

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()

    def access_log(self) -> list[dict]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]

    def failed_log_lines(self) -> int:
        return sum(rec.get("event") == "error" or (rec.get("event") == "request" and rec.get("status") != 200)
                   for rec in self.access_log())

    def add_server_latency(self, row: dict) -> None:
        """Server-side latency of a level's requests (first byte to last, from the access log) beside the client's."""
        prefix = f"lt{row['offset']}-"
        ms = [rec["latency_ms"] for rec in self.access_log()
              if rec.get("event") == "request" and str(rec.get("request_id", "")).startswith(prefix)]
        row["server_p50_ms"] = float(np.percentile(ms, 50)) if ms else float("nan")
        row["server_p99_ms"] = float(np.percentile(ms, 99)) if ms else float("nan")


def machine() -> str:
    cpu = cpu_name()
    gib = ram_gib()
    ram = f"{gib:.0f} GiB" if gib else "?"
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"nproc {os.cpu_count()}, {cpu}, RAM {ram}, load average at start {load}; "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def describe_model(name: str, directory: str | Path) -> str:
    directory = Path(directory)
    try:
        meta = json.loads((directory / "arenapref.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"`{name}`: {directory}"
    config = meta.get("config", {})
    knobs = ", ".join(f"{k} {config[k]}" for k in ("n_estimators", "max_seq_length") if k in config)
    calibrated = ", calibrated" if (directory / "calibration.json").exists() else ""
    return f"`{name}`: family {meta.get('family')}, trained on {meta.get('n_train')} rows ({knobs}{calibrated})"


def table(rows: list[dict]) -> list[str]:
    out = ["| model | batching | concurrency | requests | errors | req/s | p50 ms | p95 ms | p99 ms | max ms | "
           "server p50 / p99 ms | mean batch |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        errs = sum(r["errors"].values())
        out.append(f"| {r['model']} | {r['batching']} | {r['concurrency']} | {r['requests']} | {errs} | {r['rps']:.1f} | "
                   f"{r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | "
                   f"{r.get('server_p50_ms', float('nan')):.1f} / {r.get('server_p99_ms', float('nan')):.1f} | "
                   f"{r['mean_batch']:.1f} |")
    return out


def write_block(path: Path, lines: list[str]) -> None:
    replace_block(path, "serve", "\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="a running server (loopback only)")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=DIR", help="start a server for this model dir")
    ap.add_argument("--modes", nargs="+", choices=["on", "off"], default=["on", "off"], help="micro-batching on/off (with --model)")
    ap.add_argument("--server-args", default="", help="extra `arenapref serve` options, e.g. '--max-wait-ms 2'")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=400, help="requests per level")
    ap.add_argument("--seconds", type=float, default=60, help="time cap per level")
    ap.add_argument("--soak", type=int, default=0, help="then this many requests at --soak-concurrency (first model, batching on)")
    ap.add_argument("--soak-concurrency", type=int, default=32)
    ap.add_argument("--endpoint", choices=["judge", "classify"], default="judge")
    ap.add_argument("--repeat", action="store_true", help="send the data's pairs as they are (embedding cache hits)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "pandalm")
    ap.add_argument("--benchmarks", type=Path, help="write the results between the serve markers of this file")
    ap.add_argument("--json", type=Path, help="also write raw results as JSON")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the servers this script started are stopped too

    if bool(args.url) == bool(args.model):
        ap.error("give either --url or at least one --model NAME=DIR")
    url = loopback_url(args.url) if args.url else None
    for name, value in [("--requests", args.requests), ("--soak", args.soak)]:
        if value > MAX_REQUESTS:
            ap.error(f"{name} {value}: at most {MAX_REQUESTS}")
    if not 0 < args.seconds <= MAX_SECONDS:
        ap.error(f"--seconds must be in (0, {MAX_SECONDS}]")
    headers = {"authorization": f"Bearer {os.environ['ARENAPREF_TOKEN']}"} if os.environ.get("ARENAPREF_TOKEN") else {}
    pairs = load_pairs(args.data)
    unique = not args.repeat
    offset = itertools.count(0, MAX_REQUESTS)  # a fresh range of unique texts for every level

    def levels(url: str, name: str, batching: str, server: Server | None = None) -> list[dict]:
        rows = []
        asyncio.run(run_level(url, args.endpoint, pairs, 1, 3, 60, unique, headers, next(offset)))  # warm-up
        for c in args.concurrency:
            r = asyncio.run(run_level(url, args.endpoint, pairs, c, args.requests, args.seconds, unique, headers, next(offset)))
            r |= {"model": name, "batching": batching}
            if server is not None:
                server.add_server_latency(r)
            print(json.dumps(r), flush=True)
            rows.append(r)
        return rows

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    host_info = machine()
    rows, soak, soak_server_failures = [], None, None
    with tempfile.TemporaryDirectory(prefix="arenapref-loadtest-") as tmp:
        if url:
            rows += levels(url, "server", "as configured")
        for spec in args.model:
            name, _, directory = spec.partition("=")
            if not directory:
                ap.error(f"--model {spec!r}: expected NAME=DIR")
            for mode in args.modes:
                with Server(Path(directory), mode == "on", Path(tmp), shlex.split(args.server_args)) as server:
                    rows += levels(server.url, name, mode, server)
                    if args.soak and mode == "on" and spec == args.model[0]:
                        soak = asyncio.run(run_level(server.url, args.endpoint, pairs, args.soak_concurrency, args.soak,
                                                     MAX_SECONDS, unique, headers, next(offset)))
                        soak |= {"model": name, "batching": mode}
                        server.add_server_latency(soak)
                        print(json.dumps({"soak": soak}), flush=True)
                if soak is not None and soak_server_failures is None:
                    soak_server_failures = server.failed_log_lines()

    lines = [
        "## Serving (`arenapref serve`)", "",
        f"Measured {started} by `{' '.join(['.venv/bin/python', 'scripts/loadtest.py', *sys.argv[1:]])}`.",
        f"Machine: {host_info}. Client and server share the machine.", "",
        f"One pair per request to `/{'v1/judge' if args.endpoint == 'judge' else 'classify'}`, "
        f"{'unique texts per request' if unique else 'texts repeating'} (pairs from {args.data.name}); at most "
        f"{args.requests} requests or {args.seconds:g} s per level; latency is per request as the client sees it; "
        "server p50 / p99 is the same requests' latency inside the server (first byte in to last byte out, from its access "
        "log): the rest of the client's figure is time in the client and the kernel; 'mean batch' is pairs per model "
        "call on the server during the level.", "",
        *table(rows),
    ]
    if args.model:
        lines += ["", "Models: " + "; ".join(describe_model(*spec.partition("=")[::2]) for spec in args.model) + "."]
    if soak:
        errs = sum(soak["errors"].values())
        lines += ["", f"Soak: {soak['requests']} requests at concurrency {soak['concurrency']} ({soak['model']}, batching on): "
                      f"{errs} failed requests at the client ({soak['errors'] or 'none'}), {soak_server_failures} non-200 or "
                      f"error lines in the server's access log; {soak['rps']:.1f} req/s, p50 {soak['p50_ms']:.1f} ms, "
                      f"p99 {soak['p99_ms']:.1f} ms, max {soak['max_ms']:.1f} ms (server p50 {soak['server_p50_ms']:.1f} ms, "
                      f"p99 {soak['server_p99_ms']:.1f} ms), mean batch {soak['mean_batch']:.1f}."]
    print("\n".join(lines))
    if args.benchmarks:
        write_block(args.benchmarks, lines)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "soak": soak, "machine": host_info}, indent=2))
    if soak and (sum(soak["errors"].values()) or soak_server_failures):
        sys.exit(1)


if __name__ == "__main__":
    main()
