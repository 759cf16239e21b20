"""Where does a codec lose to Opus? Per-band spectral distances, a phase check and swaps.

    python benchmarks/codec_bands.py --checkpoint models/codec/codec.safetensors [--max-clips 4]

On held-out real clips (the same selection as `vocalis eval codec`), scored at 16 kHz:

1. log-spectral distance in dB per band (0-0.5, 0.5-1, 1-2, 2-4, 4-8 kHz) of the codec at
   6 kbps and of Opus at 6 kbps, so it shows which bands a codec spends its bits on;
2. PESQ-wb and STOI of the codec's output, of Griffin-Lim run on the codec's magnitude
   spectrogram, and of Griffin-Lim run on the original's. If Griffin-Lim on the codec's
   magnitudes scores like the codec itself while Griffin-Lim on the original's scores far
   higher, the codec's phase is not what holds it back: its magnitudes are.
3. spectral convergence per band, || |S(out)| - |S(original)| || / || |S(original)| || on
   linear magnitudes, pooled over the clips: where the log-spectral distance weighs a
   harmonic peak and the valley beside it alike, this weighs bins by their loudness, as
   PESQ and STOI hear them;
4. swaps, for the codec and for Opus: PESQ-wb, STOI and SI-SDR of the output with its
   magnitudes below 1 kHz (then 4 kHz) replaced by the original's, its own phase kept, and
   with its phase there replaced by the original's, its own magnitudes kept. What a swap
   gains is what that part of that band costs the system;
5. waveform coherence per band, |sum conj(R) D| / (||R|| ||D||) over the whole clip's
   spectrum (R the original's, D the output's), mean and lowest over the clips, and each
   system's per-clip SI-SDR: 1 where the output is the original's waveform in that band up
   to a gain, 0 where its phase has nothing of the original's. SI-SDR is an energy-weighted
   mix of these, so this says in which bands, and on which clips, it is lost.

A diagnostic for whoever trains the codec, not a test.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None, help="codec checkpoint (default: shipped)")
    parser.add_argument("--max-clips", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    import torchaudio

    from codec.evaluate import (
        BAND_EDGES_HZ,
        METRIC_RATE,
        Scorer,
        align,
        band_coherence,
        band_distance,
        codec_systems,
        opus_system,
    )
    from codec.model import SHIPPED_CHECKPOINT, load_codec
    from core.audio import load_audio
    from vocalis.commands.eval import _clips

    model = load_codec(args.checkpoint or SHIPPED_CHECKPOINT).eval()
    codec = codec_systems(model, (6.0,))[0]
    opus = opus_system(6)
    clips = _clips(
        argparse.Namespace(max_clips=args.max_clips, audio=None, manifest=None, split="test")
    )
    n_fft, hop = 512, 128
    griffin_lim = torchaudio.transforms.GriffinLim(n_fft, n_iter=64, hop_length=hop, power=1.0)
    window = torch.hann_window(n_fft)

    def spectrum(x: torch.Tensor) -> torch.Tensor:
        return torch.stft(x, n_fft, hop, window=window, return_complex=True)

    def magnitude(x: torch.Tensor) -> torch.Tensor:
        return spectrum(x).abs()

    bands: dict[str, list[list[float]]] = {codec.name: [], opus.name: []}
    quality: dict[str, list[tuple[float, float]]] = {}
    convergence: dict[str, np.ndarray] = {}  # name -> per band (error energy, signal energy)
    swaps: dict[str, list[tuple[float, float, float]]] = {}
    coherence: dict[str, list[list[float]]] = {codec.name: [], opus.name: []}
    fine_edges = (0, 150, 300, 500, 1000, 2000, 4000, 8000)
    scorer = Scorer(use_visqol=False)
    freqs = torch.fft.rfftfreq(n_fft, 1 / METRIC_RATE)
    edges = BAND_EDGES_HZ

    def swapped(r: torch.Tensor, e: torch.Tensor, part: str, below_hz: float, length: int):
        """The output e (a spectrum) with the original r's magnitude or phase below below_hz."""
        mag, phase = (r.abs(), e.angle()) if part == "magnitude" else (e.abs(), r.angle())
        out = torch.where((freqs < below_hz)[:, None], torch.polar(mag, phase), e)
        return torch.istft(out, n_fft, hop, window=window, length=length)

    for path in clips:
        wav16 = load_audio(path, METRIC_RATE)[0][0]
        wav = load_audio(path, model.sample_rate)[0]
        for system in (codec, opus):
            if system.transcode is None:
                print(f"{system.name}: {system.unavailable}", file=sys.stderr)
                continue
            ref, est, _ = align(wav16, system.transcode(wav16, wav))
            bands[system.name].append(band_distance(ref, est))
            r_spec, e_spec = spectrum(ref), spectrum(est)
            a, b = r_spec.abs(), e_spec.abs()
            per_band = [
                [float((b[m] - a[m]).square().sum()), float(a[m].square().sum())]
                for m in ((freqs >= lo) & (freqs < hi) for lo, hi in zip(edges, edges[1:]))
            ]
            convergence[system.name] = convergence.get(system.name, 0) + np.array(per_band)
            coherence[system.name].append(band_coherence(ref, est, fine_edges))
            versions = {"": est}
            for below in (1000, 4000):
                for part in ("magnitude", "phase"):
                    versions[f", original {part} below {below // 1000} kHz"] = swapped(
                        r_spec, e_spec, part, below, len(ref)
                    )
            for label, out in versions.items():
                scores = scorer.score(ref, out)
                swaps.setdefault(system.name + label, []).append(
                    (scores["pesq_wb"], scores["stoi"], scores["si_sdr"])
                )
            if system is codec:
                reference, decoded = ref, est
        torch.manual_seed(0)
        variants = {
            codec.name: decoded,
            "Griffin-Lim on the codec's magnitudes": griffin_lim(magnitude(decoded)),
            "Griffin-Lim on the original's magnitudes": griffin_lim(magnitude(reference)),
        }
        for name, out in variants.items():
            n = min(len(reference), len(out))
            scores = scorer.score(reference[:n], out[:n])
            quality.setdefault(name, []).append((scores["pesq_wb"], scores["stoi"]))

    def header(edges: tuple[int, ...], extra: str = "") -> str:
        cells = [f"{a / 1000:g}-{b / 1000:g} kHz" for a, b in zip(edges, edges[1:])]
        cells += [extra] if extra else []
        return "| system | " + " | ".join(cells) + " |\n|---|" + "---:|" * len(cells)

    band_header = header(edges)
    print(f"Log-spectral distance, dB, mean over {len(clips)} clips (speech frames):\n")
    print(band_header)
    for name, rows in bands.items():
        if rows:
            print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in np.mean(rows, axis=0)) + " |")
    print("\n| output | PESQ-wb | STOI |\n|---|---:|---:|")
    for name, rows in quality.items():
        p, s = np.mean(rows, axis=0)
        print(f"| {name} | {p:.2f} | {s:.3f} |")
    print("\nSpectral convergence on linear magnitudes, pooled over the clips:\n")
    print(band_header)
    for name, sums in convergence.items():
        print(f"| {name} | " + " | ".join(f"{(e / x) ** 0.5:.2f}" for e, x in sums) + " |")
    print("\n| output | PESQ-wb | STOI | SI-SDR dB |\n|---|---:|---:|---:|")
    for name, rows in swaps.items():
        p, s, d = (np.mean([r[i] for r in rows if r[i] is not None]) for i in range(3))
        print(f"| {name} | {p:.2f} | {s:.3f} | {d:.2f} |")
    print("\nWaveform coherence per band, mean (lowest) over the clips; per-clip SI-SDR dB:\n")
    print(header(fine_edges, "SI-SDR min / median / max"))
    for name, rows in coherence.items():
        if rows:
            cells = [f"{m:.2f} ({lo:.2f})" for m, lo in zip(np.mean(rows, 0), np.min(rows, 0))]
            d = [row[2] for row in swaps[name]]  # the output itself, one row per clip
            cells.append(f"{min(d):.1f} / {np.median(d):.1f} / {max(d):.1f}")
            print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
