"""Copies the GPU blocks a device run wrote (its gpu-blocks.md, or its whole BENCHMARKS.md copy) into BENCHMARKS.md,
replacing only those blocks (docs/gpu.md).

    .venv/bin/python scripts/gpu/take_blocks.py /work/.device/.../gpu-blocks.md [--benchmarks BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from benchblock import markers, replace_block  # noqa: E402

BLOCKS = ("gpu-engine", "gpu-train")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path)
    ap.add_argument("--benchmarks", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args()
    text = args.source.read_text(encoding="utf-8")
    for name in BLOCKS:
        start, end = markers(name)
        if start not in text or end not in text:
            print(f"{args.source}: no {name} block; left as it was")
            continue
        body = text[text.index(start) + len(start):text.index(end)]
        if "TINY CPU SMOKE RUN" in body:
            raise SystemExit(f"{args.source}: the {name} block is a tiny CPU smoke run; it does not belong in BENCHMARKS.md")
        replace_block(args.benchmarks, name, body)
        print(f"{name}: copied into {args.benchmarks}")


if __name__ == "__main__":
    main()
