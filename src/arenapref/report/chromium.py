"""Render a report in headless Chromium: the DOM after its scripts ran, the console errors, a screenshot.

Used by the tests to check that the page loads, and to make the screenshot in the docs:

    python -m arenapref.report.chromium report.html docs/report.png
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# No network, no profile state, no background services: the page alone decides what happens.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--enable-logging=stderr", "--v=0")


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


@dataclass
class Rendered:
    dom: str
    console_errors: list[str]
    body: dict[str, str]  # the data-* attributes the page's self-check set on <body>


def _run(binary: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="arenapref-chromium-") as profile:
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if "CONSOLE" in line and re.search(r"Uncaught|Error|Refused|Failed to load", line)]


def render(html_path: str | Path, screenshot: str | Path | None = None, width: int = 1280,
           binary: str | None = None, timeout: float = 120) -> Rendered:
    """Load the file, return its DOM after load; with `screenshot`, also save a PNG of the whole page."""
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError(f"no Chromium found (tried {', '.join(CANDIDATES)}); on Debian: apt-get install chromium")
    url = Path(html_path).resolve().as_uri()
    done = _run(binary, ["--virtual-time-budget=5000", f"--window-size={width},900", "--dump-dom", url], timeout)
    if done.returncode != 0 or "<html" not in done.stdout:
        raise RuntimeError(f"chromium failed (exit {done.returncode}): {done.stderr[-2000:]}")
    body_tag = re.search(r"<body([^>]*)>", done.stdout)
    body = dict(re.findall(r'data-([\w-]+)="([^"]*)"', body_tag.group(1))) if body_tag else {}
    rendered = Rendered(done.stdout, _console_errors(done.stderr), body)
    if screenshot is not None:
        height = int(body.get("height") or 4000)
        shot = Path(screenshot).resolve()
        shot.parent.mkdir(parents=True, exist_ok=True)
        done = _run(binary, ["--virtual-time-budget=5000", f"--window-size={width},{height}", f"--screenshot={shot}", url],
                    timeout)
        if done.returncode != 0 or not shot.exists():
            raise RuntimeError(f"chromium screenshot failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return rendered


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) != 3:
        sys.exit("usage: python -m arenapref.report.chromium REPORT.html SCREENSHOT.png")
    result = render(sys.argv[1], sys.argv[2])
    print(f"ok={result.body.get('ok')} figures={result.body.get('figures')} console errors={len(result.console_errors)}")
    for line in result.console_errors:
        print(line)
