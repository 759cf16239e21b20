"""The synthetic corpora's training text, rendered again on the device by the packed engines.

    # here (prepare.py --asr does this): what each corpus says, without its audio
    jobs(stage / "render", ["synth", "synth_wordnet", ...])
    # on the device, the engines unpacked by engines.py on the PATH:
    python training/gpu_lease/render.py JOBS_DIR DATA_ROOT --seconds 150 [--workers 16]

The 50 h of audio the CPU trains on cannot travel (64 MB a call), but the rows that made it
can: speaker, text, rate, pitch and varispeed of every training utterance. The device
renders them again through `corpus.synth` into DATA_ROOT/NAME/, the folder and manifest the
CPU configs name, so one ASR config serves both machines. Rows come shuffled, and each corpus
gets its share of `--seconds` by its hours, so a render cut short is an even sample of every
corpus and voice. Rows of an engine the device lacks (festival) are left out and counted.
Held-out rows never travel: only the training split is packed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a plain file on the device
    sys.path.insert(0, str(ROOT))

from corpus.manifest import read_manifest  # noqa: E402
from corpus.synth import SynthReport, synthesize  # noqa: E402
from corpus.synth_plan import SynthConfig, SynthItem  # noqa: E402
from corpus.voices import RenderSettings, Speaker, engine_available  # noqa: E402

ROW_FIELDS = ("id", "text", "speaker", "split", "speaker_split", "sentence", "rate", "pitch",
              "varispeed", "duration")  # fmt: skip


def jobs(out: Path, corpora: dict[str, Path], seed: int = 0) -> dict[str, int]:
    """Write out/NAME/{rows.jsonl, speakers.json, config.json} for each corpus folder;
    returns the rows per corpus (the training split only, shuffled)."""
    counts = {}
    for name, folder in corpora.items():
        dst = out / name
        dst.mkdir(parents=True, exist_ok=True)
        rows = []
        for u in read_manifest(folder / "manifest.jsonl"):
            if u.split != "train":
                continue
            row = {"id": u.id, "text": u.text, "speaker": u.speaker, "split": u.split,
                   "duration": u.duration, **u.extra}  # fmt: skip
            rows.append({k: row[k] for k in ROW_FIELDS})
        random.Random(seed).shuffle(rows)
        with open(dst / "rows.jsonl", "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        for f in ("speakers.json", "config.json"):
            (dst / f).write_bytes((folder / f).read_bytes())
        counts[name] = len(rows)
    return counts


def corpus_plan(folder: Path) -> tuple[SynthConfig, list[SynthItem], float]:
    """The config and items of one packed corpus, and the hours its rows took here."""
    speakers = {
        k: Speaker(**{f.name: v[f.name] for f in dataclasses.fields(Speaker)})
        for k, v in json.loads((folder / "speakers.json").read_text()).items()
    }
    raw = json.loads((folder / "config.json").read_text())
    fields = {f.name for f in dataclasses.fields(SynthConfig)}
    config = SynthConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in fields}
        | {"speakers": tuple(speakers[s] for s in raw["speakers"])}
    )
    items, hours = [], 0.0
    with open(folder / "rows.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            items.append(
                SynthItem(
                    id=r["id"],
                    speaker=speakers[r["speaker"]],
                    text=r["text"],
                    split=r["split"],
                    speaker_split=r["speaker_split"],
                    sentence=r["sentence"],
                    settings=RenderSettings(rate=r["rate"], pitch=r["pitch"]),
                    varispeed=r["varispeed"],
                )
            )
            hours += r["duration"] / 3600
    return config, items, hours


def render(jobs_dir: Path, data_root: Path, seconds: float, workers: int) -> dict[str, SynthReport]:
    """Render every packed corpus into data_root/NAME within about `seconds` in all."""
    plans = {d.name: corpus_plan(d) for d in sorted(jobs_dir.iterdir()) if d.is_dir()}
    total = sum(hours for _, _, hours in plans.values()) or 1.0
    reports = {}
    for name, (config, items, hours) in plans.items():
        kept = [it for it in items if engine_available(it.speaker.engine)]
        missing = sorted({it.speaker.engine for it in items} - {it.speaker.engine for it in kept})
        if missing:
            print(f"{name}: {len(items) - len(kept)} rows of {', '.join(missing)} left out")
        share = seconds * hours / total
        reports[name] = synthesize(
            data_root / name, config, workers=workers, items=kept, progress=False, time_budget=share
        )
        r = reports[name]
        print(
            f"{name}: {r.utterances} of {len(kept)} rows, {r.hours:.2f} h in {r.wall_seconds:.0f} s"
        )
    return reports


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("jobs", type=Path, help="the folder jobs() wrote")
    p.add_argument("data", type=Path, help="the data root to render into")
    p.add_argument("--seconds", type=float, default=150.0, help="wall time for all corpora")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = p.parse_args(argv)
    reports = render(args.jobs, args.data, args.seconds, args.workers)
    hours = sum(r.hours for r in reports.values())
    print(f"rendered {hours:.2f} h in {sum(r.wall_seconds for r in reports.values()):.0f} s")
    return 0 if hours > 0 else 2


if __name__ == "__main__":
    sys.exit(main())
