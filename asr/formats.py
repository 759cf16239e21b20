"""Transcript writers: plain text, SubRip (.srt), WebVTT (.vtt) and JSON."""

from __future__ import annotations

import dataclasses
import json
import math

from asr.transcribe import Transcript


def _clock(seconds: float, decimal: str) -> str:
    """`HH:MM:SS<decimal>mmm`, rounded to the millisecond."""
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def to_txt(transcript: Transcript) -> str:
    return transcript.text + "\n" if transcript.text else ""


def to_srt(transcript: Transcript) -> str:
    blocks = []
    for number, s in enumerate(transcript.segments, start=1):
        times = f"{_clock(s.start, ',')} --> {_clock(s.end, ',')}"
        blocks.append(f"{number}\n{times}\n{s.text}\n")
    return "\n".join(blocks)


def to_vtt(transcript: Transcript) -> str:
    blocks = ["WEBVTT\n"]
    for s in transcript.segments:
        blocks.append(f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text}\n")
    return "\n".join(blocks)


def to_json(transcript: Transcript, source: str | None = None) -> str:
    def finite(x: float) -> float | None:
        return x if math.isfinite(x) else None

    doc = {
        "source": source,
        "text": transcript.text,
        "duration": round(transcript.duration, 3),
        "avg_logprob": finite(round(transcript.avg_logprob, 4)),
        "no_speech_prob": round(transcript.no_speech_prob, 4),
        "segments": [
            {k: finite(v) if isinstance(v, float) else v for k, v in dataclasses.asdict(s).items()}
            for s in transcript.segments
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


FORMATS = {"txt": to_txt, "srt": to_srt, "vtt": to_vtt, "json": to_json}
