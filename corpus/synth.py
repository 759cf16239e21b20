"""Render a planned synthetic corpus: parallel, resumable, deterministic, checked.

Layout of a corpus folder:
    audio/<speaker>/<id>.flac   mono FLAC at `config.sample_rate`, loudness-normalised
    renders.jsonl               append-only log, one line per finished item (ok or rejected)
    manifest.jsonl              the manifest (written at the end, atomically)
    speakers.json               per-speaker metadata (engine, voice, gender, accent, ...)
    report.json                 counts and every rejected render with its reason
    config.json                 the settings; resuming with other settings is refused

Resuming skips items already in the log (rejections are deterministic, so they are not
retried) whose audio file is still present. Every item is rendered in a scratch folder,
trimmed, varispeed-jittered, checked (`corpus.render_check`), normalised and saved
atomically, so an interrupted run never leaves a half-written file in the corpus.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.errors import VocalisError
from core.io import write_json_atomic
from corpus.manifest import Utterance, write_manifest
from corpus.synth_plan import SynthConfig, SynthItem, plan_corpus, speaker_split
from corpus.voices import ENGINE_PACKAGES, engine_available, render_wav

_WORKDIR: Path | None = None


@dataclass(frozen=True)
class SynthReport:
    planned: int
    rendered: int  # in this run
    resumed: int  # already done by an earlier run
    rejected: int  # in total
    utterances: int  # in the manifest
    hours: float
    wall_seconds: float
    manifest: Path


def config_json(config: SynthConfig) -> dict[str, Any]:
    data = asdict(config)
    data["speakers"] = [s["id"] for s in data["speakers"]]
    return data


def _init_worker() -> None:
    global _WORKDIR
    import torch

    torch.set_num_threads(1)
    _WORKDIR = Path(tempfile.mkdtemp(prefix="vocalis-synth-"))


def render_item(item: SynthItem, out_dir: Path, config: SynthConfig) -> dict[str, Any]:
    """Render, check and save one item; returns its log record (never raises for bad audio)."""
    import numpy as np
    import soundfile as sf
    import soxr
    import torch

    from core.audio import normalize_loudness, save_audio
    from corpus.render_check import check_render, trim_silence

    workdir = _WORKDIR or Path(tempfile.mkdtemp(prefix="vocalis-synth-"))
    record: dict[str, Any] = {"id": item.id, "speaker": item.speaker.id, "text": item.text}
    try:
        wav_path = render_wav(
            item.speaker.engine, item.speaker.voice, item.settings, item.text, workdir
        )
        data, rate = sf.read(str(wav_path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, sf.LibsndfileError, ValueError) as e:
        return record | {"ok": False, "reason": f"render failed: {e}"}
    except Exception as e:  # a subprocess timeout or anything the engine throws at us
        return record | {"ok": False, "reason": f"render failed: {type(e).__name__}: {e}"}
    samples = data.mean(axis=1)  # (T,)
    check = check_render(samples, rate, item.text)
    if check.ok:
        samples = trim_silence(samples, rate)
        check = check_render(samples, rate, item.text)
    if not check.ok:
        return record | {"ok": False, "reason": check.reason}
    # Varispeed: play the render as if recorded at rate * factor, then resample.
    samples = soxr.resample(samples, rate * item.varispeed, config.sample_rate, quality="HQ")
    wav = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None]  # (1, T)
    wav = normalize_loudness(wav, config.sample_rate, config.lufs, peak=0.95)
    audio = out_dir / "audio" / item.speaker.id.split("/", 1)[1] / f"{item.id}.flac"
    save_audio(audio, wav, config.sample_rate)
    return record | {
        "ok": True,
        "audio": str(audio),
        "duration": round(wav.shape[-1] / config.sample_rate, 4),
    }


def _render_star(args: tuple[SynthItem, Path, SynthConfig]) -> dict[str, Any]:
    return render_item(*args)


def read_log(path: Path) -> dict[str, dict[str, Any]]:
    """id -> last record; a torn last line (from a crash) is ignored."""
    done: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return done
    with open(path, encoding="utf-8") as f:
        for raw in f:
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "id" in record:
                done[record["id"]] = record
    return done


def check_engines(items: Sequence[SynthItem]) -> None:
    missing = sorted({it.speaker.engine for it in items if not engine_available(it.speaker.engine)})
    if missing:
        packages = " ".join(ENGINE_PACKAGES[e] for e in missing)
        raise VocalisError(
            f"speech engine(s) not installed: {', '.join(missing)} (apt-get install {packages})"
        )


def _check_config(out_dir: Path, config: SynthConfig) -> None:
    path = out_dir / "config.json"
    wanted = json.loads(json.dumps(config_json(config)))
    if path.is_file():
        found = json.loads(path.read_text())
        # A corpus written before a setting existed was built with that setting's default.
        defaults = json.loads(json.dumps(config_json(SynthConfig())))
        found = {**{k: v for k, v in defaults.items() if k not in found}, **found}
        if found != wanted:
            raise VocalisError(
                f"'{out_dir}' holds a corpus built with other settings; "
                "use another output folder or delete it"
            )
    else:
        write_json_atomic(path, wanted)


def _utterance(item: SynthItem, record: dict[str, Any], config: SynthConfig) -> Utterance:
    return Utterance(
        id=item.id,
        audio=record["audio"],
        duration=record["duration"],
        sample_rate=config.sample_rate,
        text=item.text,
        speaker=item.speaker.id,
        source="synth",
        split=item.split,
        extra={
            "speaker_split": item.speaker_split,
            "sentence": item.sentence,
            "engine": item.speaker.engine,
            "rate": item.settings.rate,
            "pitch": item.settings.pitch,
            "varispeed": item.varispeed,
        },
    )


def _write_outputs(
    out_dir: Path, items: Sequence[SynthItem], log: dict[str, dict[str, Any]], config: SynthConfig
) -> tuple[list[Utterance], list[dict[str, Any]]]:
    utterances, rejected = [], []
    for item in items:
        record = log.get(item.id)
        if record is None:
            continue
        if record.get("ok"):
            utterances.append(_utterance(item, record, config))
        else:
            rejected.append(record)
    write_manifest(out_dir / "manifest.jsonl", utterances)
    speakers = {s.id: asdict(s) | {"split": speaker_split(config, s.id)} for s in config.speakers}
    write_json_atomic(out_dir / "speakers.json", speakers)
    reasons = Counter(r["reason"].split(" (")[0] for r in rejected)
    write_json_atomic(
        out_dir / "report.json",
        {
            "planned": len(items),
            "utterances": len(utterances),
            "hours": round(sum(u.duration for u in utterances) / 3600, 3),
            "rejected": len(rejected),
            "rejected_by_reason": dict(reasons),
            "rejected_items": rejected,
        },
    )
    return utterances, rejected


def synthesize(
    out_dir: str | os.PathLike,
    config: SynthConfig,
    *,
    workers: int = 2,
    progress: bool = True,
    items: Sequence[SynthItem] | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    time_budget: float | None = None,
) -> SynthReport:
    """Render (or finish rendering) the corpus of `config` into `out_dir`.

    With `time_budget`, rendering stops that many seconds after the first item came back
    (workers start first); the manifest then lists what was rendered, in the order of
    `items`, and a later call resumes the rest.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    items = list(items) if items is not None else plan_corpus(config)
    check_engines(items)
    _check_config(out_dir, config)
    log_path = out_dir / "renders.jsonl"
    log = read_log(log_path)
    log = {k: r for k, r in log.items() if not r.get("ok") or Path(r["audio"]).is_file()}
    todo = [it for it in items if it.id not in log]
    resumed = len(items) - len(todo)

    jobs = [(it, out_dir, config) for it in todo]
    bar = tqdm(total=len(todo), unit="utt", desc="synth", disable=not progress, smoothing=0.05)
    seconds, first, finished = 0.0, None, 0
    with open(log_path, "a", encoding="utf-8") as log_file:
        if workers > 1 and len(jobs) > 1:
            ctx = multiprocessing.get_context("spawn")
            pool = ctx.Pool(workers, initializer=_init_worker)
            results = pool.imap_unordered(_render_star, jobs, chunksize=8)
        else:
            _init_worker()
            pool, results = None, (render_item(*job) for job in jobs)
        try:
            for record in results:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                log[record["id"]] = record
                finished += 1
                seconds += record.get("duration", 0.0)
                bar.update(1)
                bar.set_postfix(hours=f"{seconds / 3600:.2f}")
                if on_record is not None:
                    on_record(record)
                first = time.perf_counter() if first is None else first
                if time_budget is not None and time.perf_counter() - first > time_budget:
                    break
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
                pool.join()

    utterances, rejected = _write_outputs(out_dir, items, log, config)
    return SynthReport(
        planned=len(items),
        rendered=finished,
        resumed=resumed,
        rejected=len(rejected),
        utterances=len(utterances),
        hours=sum(u.duration for u in utterances) / 3600,
        wall_seconds=time.perf_counter() - start,
        manifest=out_dir / "manifest.jsonl",
    )
