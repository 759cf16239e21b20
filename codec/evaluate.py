"""Objective evaluation of a codec against classic speech codecs, on held-out real speech.

Not imported by `import codec`: it pulls in the metric packages (`pesq`, `pystoi`,
`visqol-python`) and runs external encoders (`ffmpeg` with libopus, `c2enc`/`c2dec`).

Every system is scored at 16 kHz against the same reference (the clip loaded at 16 kHz):

- PESQ-wb (ITU-T P.862.2, `pesq`), STOI (`pystoi`), ViSQOL v3 speech mode with its lattice
  model (`visqol-python` + `ai-edge-litert`),
- mel distance: mean |log10 mel| difference with core.audio's log-mel (`MEL_DISTANCE`),
- SI-SDR in dB.

Outputs are first aligned to the reference by the cross-correlation peak within ±100 ms
(codec2 delays its output by ~17 ms; STOI and SI-SDR assume aligned signals). A metric whose
package cannot be imported or run is reported as unavailable with the reason, never guessed.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.audio import MelConfig, load_audio, log_mel, resample

METRIC_RATE = 16000
MEL_DISTANCE = MelConfig(sample_rate=METRIC_RATE, n_fft=1024, hop_length=256, n_mels=80)
MAX_LAG_SECONDS = 0.1
CODEC_KBPS = (1.5, 3.0, 6.0)
METRICS = ("pesq_wb", "stoi", "visqol", "mel_distance", "si_sdr")
METRIC_TITLES = {
    "pesq_wb": "PESQ-wb ↑",
    "stoi": "STOI ↑",
    "visqol": "ViSQOL ↑",
    "mel_distance": "mel dist ↓",
    "si_sdr": "SI-SDR dB ↑",
}

# A system turns a clip into its decoded version: (wav16k (T,), wav_at_codec_rate (1, T'))
# -> (T'',) at METRIC_RATE.
Transcode = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------
# Metrics on 1-D float tensors at METRIC_RATE


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor, eps: float = 1e-10) -> float:
    """Scale-invariant SDR in dB of `estimate` against `reference` (both (T,), zero-mean'd)."""
    ref = reference.double() - reference.double().mean()
    est = estimate.double() - estimate.double().mean()
    target = (est @ ref) / (ref @ ref + eps) * ref
    noise = est - target
    return float(10 * torch.log10((target @ target + eps) / (noise @ noise + eps)))


def mel_distance(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """Mean |log10 mel(reference) - log10 mel(estimate)| with `MEL_DISTANCE`."""
    a = log_mel(reference, MEL_DISTANCE, floor=1e-5)
    b = log_mel(estimate, MEL_DISTANCE, floor=1e-5)
    return float((a - b).abs().mean())


BAND_EDGES_HZ = (0, 500, 1000, 2000, 4000, 8000)


def band_distance(
    reference: torch.Tensor,
    estimate: torch.Tensor,
    edges: Sequence[float] = BAND_EDGES_HZ,
    rate: int = METRIC_RATE,
    n_fft: int = 512,
) -> list[float]:
    """Log-spectral distance in dB per frequency band: mean |20 log10 |X| - 20 log10 |Y||
    over the STFT bins in [edges[i], edges[i + 1]) and the frames where the reference is
    within 50 dB of its loudest bin (pauses left out). Says *where* a codec loses: Opus at
    6 kbps drops everything above 4 kHz, which PESQ-wb and STOI barely weigh.
    reference, estimate: aligned (T,) float at `rate`."""
    window = torch.hann_window(n_fft, dtype=torch.float64)

    def db(x: torch.Tensor) -> torch.Tensor:  # (freqs, frames)
        spec = torch.stft(x.double(), n_fft, n_fft // 4, window=window, return_complex=True)
        return 20 * spec.abs().clamp_min(1e-5).log10()

    ref, est = db(reference), db(estimate)
    frames = min(ref.shape[1], est.shape[1])
    ref, est = ref[:, :frames], est[:, :frames]
    loud = ref.max(dim=0).values > ref.max() - 50
    freqs = torch.fft.rfftfreq(n_fft, 1 / rate, dtype=torch.float64)
    diff = (ref - est).abs()[:, loud]
    out = []
    for lo, hi in zip(edges, edges[1:]):
        rows = (freqs >= lo) & (freqs < hi)
        out.append(float(diff[rows].mean()) if rows.any() and diff.numel() else float("nan"))
    return out


def band_coherence(
    reference: torch.Tensor,
    estimate: torch.Tensor,
    edges: Sequence[float] = BAND_EDGES_HZ,
    rate: int = METRIC_RATE,
) -> list[float]:
    """Waveform coherence per frequency band: |sum conj(R) E| / (||R|| ||E||) over the bins
    of the whole clip's spectrum in [edges[i], edges[i + 1]). 1 where the estimate is the
    reference's waveform in that band up to a gain, near 0 where its phase keeps nothing of
    the reference's whatever its magnitudes. SI-SDR mixes these by the bands' energy, so
    this says in which bands a codec loses it. reference, estimate: aligned (T,) at `rate`."""
    r, e = torch.fft.rfft(reference.double()), torch.fft.rfft(estimate.double())
    freqs = torch.fft.rfftfreq(len(reference), 1 / rate, dtype=torch.float64)
    out = []
    for lo, hi in zip(edges, edges[1:]):
        rows = (freqs >= lo) & (freqs < hi)
        norm = r[rows].abs().square().sum().sqrt() * e[rows].abs().square().sum().sqrt()
        out.append(float((r[rows].conj() * e[rows]).sum().abs() / norm) if norm > 0 else 0.0)
    return out


def align(reference: torch.Tensor, estimate: torch.Tensor, rate: int = METRIC_RATE):
    """Shift `estimate` by its delay against `reference` (|lag| <= MAX_LAG_SECONDS) and cut
    both to a common length. Returns (reference, estimate, lag in samples; > 0 = estimate late).

    The delay is found in two steps. The energy envelopes (2 ms moving average of the
    squared signals) give it to within a few samples whatever the phase: a neural decoder's
    waveform need not correlate with the original's sample by sample (SI-SDR far below 0 dB),
    and its waveform cross-correlation then peaks at a chance lag, tens of milliseconds off,
    which costs STOI and mel distance for no fault of the audio. The waveform
    cross-correlation then refines the lag within ±2 ms of that, exactly for a waveform codec.
    """
    smooth = max(1, int(ENVELOPE_SECONDS * rate))
    coarse = _xcorr_lag(_envelope(reference, smooth), _envelope(estimate, smooth), rate)
    lag = _xcorr_lag(reference, estimate, rate, around=coarse, within=smooth)
    estimate = estimate[lag:] if lag >= 0 else torch.cat([estimate.new_zeros(-lag), estimate])
    length = min(reference.shape[-1], estimate.shape[-1])
    return reference[:length], estimate[:length], lag


ENVELOPE_SECONDS = 0.002


def _envelope(wav: torch.Tensor, width: int) -> torch.Tensor:
    energy = wav.double().square()[None, None]  # (1, 1, T)
    return torch.nn.functional.avg_pool1d(energy, width, 1, padding=width // 2)[0, 0]


def _xcorr_lag(
    reference: torch.Tensor,
    estimate: torch.Tensor,
    rate: int,
    *,
    around: int = 0,
    within: int | None = None,
) -> int:
    """The lag (|lag| <= MAX_LAG_SECONDS, and |lag - around| <= within if given) at which
    the zero-mean cross-correlation of the two signals peaks."""
    ref = reference.double() - reference.double().mean()
    est = estimate.double() - estimate.double().mean()
    n = max(ref.shape[-1], est.shape[-1])
    size = 1 << (2 * n - 1).bit_length()
    corr = torch.fft.irfft(torch.fft.rfft(est, size) * torch.fft.rfft(ref, size).conj(), size)
    max_lag = int(MAX_LAG_SECONDS * rate)
    lags = torch.arange(-max_lag, max_lag + 1)  # corr[k] = sum est[t + k] ref[t]
    values = corr[lags % size]
    if within is not None:
        values = values.masked_fill((lags - around).abs() > within, -math.inf)
    return int(lags[values.argmax()])


class Scorer:
    """All five metrics; remembers why a metric package is unavailable."""

    def __init__(self, *, use_visqol: bool = True):
        self.unavailable: dict[str, str] = {}
        self._pesq = self._import("pesq_wb", "pesq", "pesq")
        self._stoi = self._import("stoi", "pystoi", "stoi")
        self._visqol = None
        if not use_visqol:
            self.unavailable["visqol"] = "skipped (--no-visqol)"
        else:
            try:
                from visqol import VisqolApi

                api = VisqolApi()
                api.create(mode="speech", use_lattice_model=True)  # the C++ default model
                self._visqol = api
            except Exception as e:  # ImportError, or the runtime failing to load its model
                self.unavailable["visqol"] = f"ViSQOL unavailable: {' '.join(str(e).split())}"

    def _import(self, metric: str, module: str, name: str):
        try:
            return getattr(__import__(module, fromlist=[name]), name)
        except ImportError as e:
            self.unavailable[metric] = f"{module} not installed ({e})"
            return None

    def score(self, reference: torch.Tensor, estimate: torch.Tensor) -> dict[str, float | None]:
        """reference, estimate: aligned (T,) float at METRIC_RATE."""
        ref = reference.double().numpy()
        est = estimate.double().numpy()
        out: dict[str, float | None] = {
            "mel_distance": mel_distance(reference, estimate),
            "si_sdr": si_sdr(reference, estimate),
        }
        out["pesq_wb"] = self._safe(lambda: self._pesq(METRIC_RATE, ref, est, "wb"), self._pesq)
        out["stoi"] = self._safe(lambda: self._stoi(ref, est, METRIC_RATE), self._stoi)
        out["visqol"] = self._safe(
            lambda: self._visqol.measure_from_arrays(ref, est, METRIC_RATE).moslqo, self._visqol
        )
        return out

    @staticmethod
    def _safe(fn: Callable[[], float], available: object) -> float | None:
        if available is None:
            return None
        try:
            value = float(fn())
        except Exception:  # e.g. PESQ finds no speech in a near-silent clip
            return None
        return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------
# Systems


@dataclass(frozen=True)
class System:
    name: str
    kbps: float
    transcode: Transcode | None  # None: not available, see `note`
    note: str = ""


def _run(cmd: Sequence[str]) -> None:
    proc = subprocess.run(list(cmd), capture_output=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.decode(errors='replace')[-300:]}")


def _write_s16(path: Path, wav: torch.Tensor) -> None:
    (wav.clamp(-1, 1) * 32767).round().to(torch.int16).numpy().astype("<i2").tofile(path)


def opus_system(kbps: float) -> System:
    """Opus (libopus through ffmpeg) at `kbps`, fed and decoded at 16 kHz."""
    name = f"Opus {kbps:g} kbps"
    if shutil.which("ffmpeg") is None:
        return System(name, kbps, None, "ffmpeg not found (Debian package `ffmpeg`)")

    def transcode(wav16: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        with tempfile.TemporaryDirectory() as tmp:
            raw, opus, out = Path(tmp, "in.raw"), Path(tmp, "x.opus"), Path(tmp, "out.raw")
            _write_s16(raw, wav16)
            pcm = ["-f", "s16le", "-ar", str(METRIC_RATE), "-ac", "1"]
            _run(["ffmpeg", "-v", "error", "-y", *pcm, "-i", raw, "-c:a", "libopus"]
                 + ["-b:a", f"{kbps * 1000:g}", opus])  # fmt: skip
            _run(["ffmpeg", "-v", "error", "-y", "-i", opus, *pcm, out])
            return torch.from_numpy(np.fromfile(out, dtype="<i2").astype(np.float32) / 32768)

    return System(name, kbps, transcode)


def codec2_system(mode: int = 3200) -> System:
    """codec2 (`c2enc`/`c2dec`) at `mode` bit/s: 8 kHz 16-bit raw in and out."""
    name = f"codec2 {mode}"
    if shutil.which("c2enc") is None or shutil.which("c2dec") is None:
        return System(name, mode / 1000, None, "c2enc/c2dec not found (Debian package `codec2`)")

    def transcode(wav16: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        with tempfile.TemporaryDirectory() as tmp:
            raw, bits, out = Path(tmp, "in.raw"), Path(tmp, "x.c2"), Path(tmp, "out.raw")
            _write_s16(raw, resample(wav16[None], METRIC_RATE, 8000)[0])
            _run(["c2enc", str(mode), raw, bits])
            _run(["c2dec", str(mode), bits, out])
            wav8 = torch.from_numpy(np.fromfile(out, dtype="<i2").astype(np.float32) / 32768)
            return resample(wav8[None], 8000, METRIC_RATE)[0]

    return System(name, mode / 1000, transcode)


def codec_systems(model, kbps: Sequence[float] = CODEC_KBPS, name: str = "vocalis") -> list[System]:
    """One row per target bitrate: the codebook count whose bitrate is closest to it."""
    systems = []
    for target in kbps:
        n = max(1, round(target * 1000 / model.bitrate(1)))
        if n > model.num_codebooks:
            systems.append(
                System(f"{name} {target:g} kbps", target, None, f"needs {n} > {model.num_codebooks} codebooks")
            )  # fmt: skip
            continue

        def transcode(_: torch.Tensor, wav: torch.Tensor, n: int = n) -> torch.Tensor:
            with torch.inference_mode():
                codes = model.encode(wav[None], n_codebooks=n)  # (1, n, F)
                out = model.decode(codes)[0, :, : wav.shape[-1]]  # (1, T)
            return resample(out.float().cpu(), model.sample_rate, METRIC_RATE)[0]

        systems.append(
            System(f"{name} {target:g} kbps ({n} cb)", model.bitrate(n) / 1000, transcode)
        )
    return systems


def baseline_systems() -> list[System]:
    return [opus_system(6), opus_system(12), codec2_system(3200)]


# ---------------------------------------------------------------------------------------
# Running and reporting


@dataclass(frozen=True)
class SystemResult:
    name: str
    kbps: float
    scores: dict[str, float | None]  # mean over clips of each metric (None: unavailable)
    clips: int
    mean_lag_ms: float | None
    note: str = ""


@dataclass(frozen=True)
class EvalReport:
    systems: list[SystemResult]
    clips: list[str]
    notes: dict[str, str] = field(default_factory=dict)  # metric -> why unavailable

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def to_markdown(self) -> str:
        head = ["system", "kbps", *(METRIC_TITLES[m] for m in METRICS), "clips"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s in self.systems:
            cells = [_fmt(s.scores.get(m), m) if s.clips else "—" for m in METRICS]
            lines.append(f"| {s.name} | {s.kbps:.2f} | " + " | ".join(cells) + f" | {s.clips} |")
        foot = [f"Metrics at {METRIC_RATE} Hz on {len(self.clips)} clip(s)."]
        foot += [f"- {METRIC_TITLES[m]}: n/a, {why}" for m, why in self.notes.items()]
        foot += [f"- {s.name}: {s.note}" for s in self.systems if s.note]
        return "\n".join(lines + [""] + foot) + "\n"


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if metric == "stoi" else f"{value:.2f}"


def evaluate(
    clips: Sequence[str | Path],
    systems: Sequence[System],
    *,
    codec_rate: int = 24000,
    scorer: Scorer | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvalReport:
    """Score every system on every clip (audio files of real speech)."""
    scorer = scorer or Scorer()
    per_system: dict[str, list[dict[str, float | None]]] = {s.name: [] for s in systems}
    lags: dict[str, list[int]] = {s.name: [] for s in systems}
    for path in clips:
        ref, _ = load_audio(path, METRIC_RATE)  # (1, T)
        ref = ref[0]  # (T,)
        src, _ = load_audio(path, codec_rate)  # (1, T') for codecs that want their own rate
        for system in systems:
            if system.transcode is None:
                continue
            decoded = system.transcode(ref, src).float()  # (T'',)
            r, d, lag = align(ref, decoded)
            per_system[system.name].append(scorer.score(r, d))
            lags[system.name].append(lag)
        if progress is not None:
            progress(str(path))
    results = []
    for s in systems:
        rows = per_system[s.name]
        means = {m: _mean([r[m] for r in rows]) for m in METRICS}
        lag = 1000 * float(np.mean(lags[s.name])) / METRIC_RATE if lags[s.name] else None
        results.append(SystemResult(s.name, s.kbps, means, len(rows), lag, s.note))
    return EvalReport(results, [str(c) for c in clips], dict(scorer.unavailable))


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None
