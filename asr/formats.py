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


# A subtitle cue holds at most two lines of 42 characters and 7 seconds (common broadcast
# limits); a segment with timed words is split into such cues, one without them is one cue.
CUE_CHARS = 84
CUE_SECONDS = 7.0


def cues(transcript: Transcript) -> list[tuple[float, float, str]]:
    """(start, end, text) of each subtitle cue: segments, those with timed words split at
    word boundaries into runs of at most `CUE_CHARS` characters and `CUE_SECONDS`, after a
    punctuation mark where one falls in the run's second half."""
    out = []
    for s in transcript.segments:
        if not s.words:
            out.append((s.start, s.end, s.text))
            continue
        run = [s.words[0]]
        for word in s.words[1:]:
            text = " ".join(w.word for w in [*run, word])
            if len(text) > CUE_CHARS or word.end - run[0].start > CUE_SECONDS:
                # end the cue after its last punctuation in its second half, if any
                ends = [k for k, w in enumerate(run) if w.word[-1] in ".,;:!?"]
                cut = ends[-1] + 1 if ends and ends[-1] + 1 >= len(run) / 2 else len(run)
                out.append((run[0].start, run[cut - 1].end, " ".join(w.word for w in run[:cut])))
                run = [*run[cut:], word]
            else:
                run.append(word)
        out.append((run[0].start, run[-1].end, " ".join(w.word for w in run)))
    return out


def to_srt(transcript: Transcript) -> str:
    blocks = []
    for number, (start, end, text) in enumerate(cues(transcript), start=1):
        times = f"{_clock(start, ',')} --> {_clock(end, ',')}"
        blocks.append(f"{number}\n{times}\n{text}\n")
    return "\n".join(blocks)


def to_vtt(transcript: Transcript) -> str:
    blocks = ["WEBVTT\n"]
    for start, end, text in cues(transcript):
        blocks.append(f"{_clock(start, '.')} --> {_clock(end, '.')}\n{text}\n")
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
            {
                k: finite(v) if isinstance(v, float) else v
                for k, v in dataclasses.asdict(s).items()
                if k != "words" or v  # words only when they were timed
            }
            for s in transcript.segments
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


FORMATS = {"txt": to_txt, "srt": to_srt, "vtt": to_vtt, "json": to_json}
