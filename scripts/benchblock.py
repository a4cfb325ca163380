"""BENCHMARKS.md is shared: each benchmark script owns one block between `<!-- NAME:start -->` and
`<!-- NAME:end -->` and rewrites only that block, so a rerun of one script keeps every other script's figures."""

from __future__ import annotations

from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def has_block(path: Path, name: str) -> bool:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return all(m in text for m in markers(name))


def replace_block(path: Path, name: str, body: str) -> None:
    """Put `body` between the markers of `name`, in place if the block exists, else at the end of the file."""
    start, end = markers(name)
    block = f"{start}\n{body.strip(chr(10))}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def _proc_field(path: str, key: str) -> str | None:
    try:
        return next((line.split(":", 1)[1].strip() for line in Path(path).read_text().splitlines() if line.startswith(key)), None)
    except OSError:
        return None


def cpu_name() -> str:
    import platform

    return _proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine()


def ram_gib() -> float | None:
    total = _proc_field("/proc/meminfo", "MemTotal")  # "24561236 kB"
    return int(total.split()[0]) / 2**20 if total else None


def machine_summary() -> str:
    """CPU model, cores, OS and Python: the machine line every block states beside its figures."""
    import os
    import platform

    return f"{cpu_name()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


class LoadSampler:
    """The 1-minute load average, sampled every `every` seconds in a thread while a benchmark runs, so its block
    can say how busy the (shared) machine was."""

    def __init__(self, every: float = 15.0):
        import threading

        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def read() -> float | None:
        try:
            return float(Path("/proc/loadavg").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self.read()
            if value is not None:
                self.samples.append(value)
            self._stop.wait(self.every)

    def start(self) -> "LoadSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def __enter__(self) -> "LoadSampler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def summary(self) -> str:
        import statistics

        if not self.samples:
            return "not measured"
        s = self.samples
        return (f"mean {statistics.fmean(s):.2f}, median {statistics.median(s):.2f}, max {max(s):.2f} ({len(s)} samples "
                f"every {self.every:.0f} s)")


def shared_sets(data: Path, left_out: tuple[str, ...] = ()) -> dict:
    """Every shared set with texts, by source name (sorted), less the sources in `left_out`; battle logs (no
    texts) are dropped."""
    from arenapref.data.io import read_pairs
    from arenapref.data.record import split_textless

    records, _ = read_pairs(data)
    with_text, _ = split_textless(records)
    sets: dict[str, list] = {}
    for r in with_text:
        if r.source not in left_out:
            sets.setdefault(r.source, []).append(r)
    return dict(sorted(sets.items()))
