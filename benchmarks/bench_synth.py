"""Benchmark: hours of synthetic speech rendered per minute of wall time.

Renders the same generated sentences with each engine's speakers (and with all speakers
mixed, as in the corpus) through the real pipeline (render, check, trim, resample,
normalise, FLAC), in parallel worker processes, into a temporary folder.

    .venv/bin/python benchmarks/bench_synth.py [--utterances 120] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus.sentences import generate_sentences  # noqa: E402
from corpus.synth import synthesize  # noqa: E402
from corpus.synth_plan import SynthConfig, plan_corpus  # noqa: E402
from corpus.voices import SPEAKERS, engine_available  # noqa: E402


def bench(engine: str | None, utterances: int, workers: int) -> tuple[float, float, int]:
    """(audio hours, wall seconds, utterances kept) for one engine or all (None)."""
    speakers = tuple(s for s in SPEAKERS if engine is None or s.engine == engine)
    config = replace(
        SynthConfig(), utterances=utterances, speakers=speakers, valid_speakers=(), test_speakers=()
    )
    items = plan_corpus(config, generate_sentences(utterances, seed=123))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report = synthesize(tmp, config, workers=workers, progress=False, items=items)
        wall = time.perf_counter() - start
    return report.hours, wall, report.utterances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=120, help="utterances per run")
    parser.add_argument("--workers", type=int, default=2, help="render processes")
    args = parser.parse_args()
    print(f"synth benchmark: {args.utterances} utterances per run, {args.workers} workers, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'engine':10s} {'utts':>5s} {'audio h':>8s} {'wall s':>7s} {'h/min':>7s} {'x RT':>6s}")
    for engine in ("espeak", "flite", "festival", None):
        if engine is not None and not engine_available(engine):
            print(f"{engine:10s} not installed")
            continue
        hours, wall, kept = bench(engine, args.utterances, args.workers)
        name = engine or "all (mix)"
        print(f"{name:10s} {kept:5d} {hours:8.3f} {wall:7.1f} {hours / (wall / 60):7.3f} "
              f"{hours * 3600 / wall:6.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
