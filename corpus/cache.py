"""Preprocessing cache: encoded features of every utterance in compact safetensors shards.

An encoder is anything with `name`, `version_hash`, `input_rate` and `encode(wav, rate)`
(`FeatureEncoder`): the resampler (`ResampleEncoder`, 16-bit PCM at one rate) and the
codec (`CodecEncoder`, int16 tokens (n, F) keyed by the checkpoint's weights hash). Each utterance's entry is keyed by a SHA-256 of the source file
(absolute path, size, mtime) and the encoder (name, version hash): changing either makes
a new key, so the entry is re-encoded on the next `build` and the stale one dropped.

Folder layout: `shard-NNNNN.safetensors` (one tensor per utterance, named by its key) and
`index.json` (the shard manifest: encoder, and per key the id, shard, shape, dtype).
Shards and index are written atomically; an interrupted build keeps finished shards.
No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from core.errors import AudioError
from core.io import atomic_path, write_json_atomic
from corpus.manifest import Utterance

INDEX_VERSION = 1


@runtime_checkable
class FeatureEncoder(Protocol):
    name: str
    version_hash: str  # changes whenever the encoder's output would change
    input_rate: int | None  # rate the audio is loaded at before `encode` (None: as stored)

    def encode(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """(1, T) mono float audio -> features of any shape and dtype."""
        ...


@dataclass(frozen=True)
class ResampleEncoder:
    """Mono audio resampled to `sample_rate`, stored as 16-bit PCM (T,)."""

    sample_rate: int

    @property
    def name(self) -> str:
        return f"pcm16-{self.sample_rate}"

    @property
    def version_hash(self) -> str:
        return hashlib.sha256(f"resample-v1:{self.sample_rate}".encode()).hexdigest()[:16]

    @property
    def input_rate(self) -> int:
        return self.sample_rate

    def encode(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        pcm = (wav[0].clamp(-1, 1) * 32767).round()  # (T,)
        return pcm.to(torch.int16)


@dataclass(frozen=True, eq=False)
class CodecEncoder:
    """Codec tokens (n, F) int16 of any `CompressionModel`, identified by `weights_hash`
    (the checkpoint's SHA-256): new weights make new keys, so the cache re-encodes."""

    model: Any  # codec.interface.CompressionModel, in eval mode
    weights_hash: str
    n_codebooks: int | None = None  # None: all of the model's codebooks
    # Hashes of the codecs whose codes this one shares (codec.model.same_codes): tokens
    # made with any of them are this codec's tokens.
    same_codes: frozenset[str] = frozenset()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, n_codebooks: int | None = None):
        from codec.model import load_codec, same_codes
        from core.checkpoint import weights_sha256

        model = load_codec(path).eval()
        if n_codebooks is not None and not 1 <= n_codebooks <= model.num_codebooks:
            raise ValueError(f"n_codebooks must be in [1, {model.num_codebooks}]")
        sha = weights_sha256(path)
        return cls(model, sha, n_codebooks, same_codes(path, sha256=sha))

    def speaks(self, codec_sha256: str) -> bool:
        """Whether tokens made with the codec of that weights hash are this codec's."""
        return codec_sha256 == self.weights_hash or codec_sha256 in self.same_codes

    @property
    def name(self) -> str:
        return f"codec-{self.weights_hash[:12]}-q{self.n_codebooks or self.model.num_codebooks}"

    @property
    def version_hash(self) -> str:
        text = f"codec-v1:{self.weights_hash}:{self.n_codebooks}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def input_rate(self) -> int:
        return self.model.sample_rate

    def encode(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        with torch.inference_mode():
            codes = self.model.encode(wav[None], self.n_codebooks)  # (1, n, F)
        return codes[0].to(torch.int16)  # (n, F); codebooks have <= 32768 entries


def source_fingerprint(path: str | os.PathLike) -> str:
    """Absolute path, size and modification time of a file (its cache identity)."""
    stat = os.stat(path)
    return f"{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}"


def entry_key(path: str | os.PathLike, encoder: FeatureEncoder) -> str:
    text = f"{source_fingerprint(path)}|{encoder.name}|{encoder.version_hash}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class CacheEntry:
    id: str
    shard: str
    shape: tuple[int, ...]
    dtype: str
    seconds: float


@dataclass(frozen=True)
class CacheBuildResult:
    encoded: int
    reused: int
    failed: int
    failures: tuple[tuple[str, str], ...]  # (audio path, reason)
    shards: int
    entries: int


class FeatureCache:
    def __init__(
        self,
        folder: str | os.PathLike,
        encoder: FeatureEncoder,
        *,
        shard_seconds: float = 1800.0,
        shard_bytes: int = 256 * 2**20,
    ) -> None:
        self.folder = Path(folder)
        self.encoder = encoder
        self.shard_seconds = shard_seconds
        self.shard_bytes = shard_bytes
        self.entries: dict[str, CacheEntry] = self._read_index()
        self._handles: dict[str, object] = {}

    @property
    def index_path(self) -> Path:
        return self.folder / "index.json"

    def _read_index(self) -> dict[str, CacheEntry]:
        if not self.index_path.is_file():
            return {}
        data = json.loads(self.index_path.read_text())
        if data.get("version") != INDEX_VERSION:
            return {}
        entries = {}
        for key, e in data.get("entries", {}).items():
            entries[key] = CacheEntry(
                e["id"], e["shard"], tuple(e["shape"]), e["dtype"], e["seconds"]
            )
        return entries

    def _write_index(self) -> None:
        write_json_atomic(
            self.index_path,
            {
                "version": INDEX_VERSION,
                "encoder": {"name": self.encoder.name, "version_hash": self.encoder.version_hash},
                "entries": {k: asdict(e) for k, e in sorted(self.entries.items())},
            },
        )

    def _next_shard(self) -> str:
        used = {int(p.stem.split("-")[1]) for p in self.folder.glob("shard-*.safetensors")}
        return f"shard-{max(used, default=-1) + 1:05d}.safetensors"

    def _flush(self, pending: dict[str, torch.Tensor], meta: dict[str, tuple[str, float]]) -> None:
        from safetensors.torch import save_file

        if not pending:
            return
        shard = self._next_shard()
        with atomic_path(self.folder / shard) as tmp:
            save_file({k: v.contiguous() for k, v in pending.items()}, str(tmp))
        for key, tensor in pending.items():
            uid, seconds = meta[key]
            dtype = str(tensor.dtype).removeprefix("torch.")
            self.entries[key] = CacheEntry(uid, shard, tuple(tensor.shape), dtype, seconds)
        self._write_index()
        pending.clear()
        meta.clear()

    def build(self, utterances: Sequence[Utterance], *, progress: bool = False) -> CacheBuildResult:
        """Encode what is missing or stale; drop entries of files no longer listed."""
        from tqdm import tqdm

        from core.audio import load_audio

        self.folder.mkdir(parents=True, exist_ok=True)
        wanted: dict[str, Utterance] = {}
        failures: list[tuple[str, str]] = []
        for u in utterances:
            try:
                wanted[entry_key(u.audio, self.encoder)] = u
            except OSError as e:
                failures.append((u.audio, e.strerror or str(e)))
        stale = [k for k in self.entries if k not in wanted]
        for key in stale:
            del self.entries[key]
        live_shards = {e.shard for e in self.entries.values()}
        for path in self.folder.glob("shard-*.safetensors"):
            if path.name not in live_shards:
                path.unlink()
        todo = [(k, u) for k, u in wanted.items() if k not in self.entries]
        pending: dict[str, torch.Tensor] = {}
        meta: dict[str, tuple[str, float]] = {}
        seconds = size = 0.0
        encoded = 0
        for key, u in tqdm(todo, desc="cache", unit="utt", disable=not progress):
            try:
                wav, rate = load_audio(u.audio, self.encoder.input_rate)
            except AudioError as e:
                failures.append((u.audio, str(e)))
                continue
            features = self.encoder.encode(wav, rate)
            encoded += 1
            pending[key], meta[key] = features, (u.id, wav.shape[-1] / rate)
            seconds += wav.shape[-1] / rate
            size += features.numel() * features.element_size()
            if seconds >= self.shard_seconds or size >= self.shard_bytes:
                self._flush(pending, meta)
                seconds = size = 0.0
        self._flush(pending, meta)
        if stale or not self.index_path.is_file():
            self._write_index()
        self._handles.clear()
        return CacheBuildResult(
            encoded=encoded,
            reused=len(wanted) - len(todo),
            failed=len(failures),
            failures=tuple(failures),
            shards=len({e.shard for e in self.entries.values()}),
            entries=len(self.entries),
        )

    def get(self, utt: Utterance) -> torch.Tensor | None:
        """The cached features of `utt`, or None if absent or stale (source changed)."""
        from safetensors import safe_open

        try:
            key = entry_key(utt.audio, self.encoder)
        except OSError:
            return None
        entry = self.entries.get(key)
        if entry is None:
            return None
        handle = self._handles.get(entry.shard)
        if handle is None:
            handle = safe_open(str(self.folder / entry.shard), framework="pt")
            self._handles[entry.shard] = handle
        return handle.get_tensor(key)

    def __getstate__(self) -> dict:
        # DataLoader workers get a copy without open shard handles; each reopens lazily.
        return {k: (v if k != "_handles" else {}) for k, v in self.__dict__.items()}


def default_folder(data_root: str | os.PathLike, manifest: str | os.PathLike, encoder) -> Path:
    """Where a manifest's cache lives unless told otherwise: `<data root>/cache/<manifest
    stem>-<encoder name>` (the folder `vocalis data cache` writes)."""
    return Path(data_root) / "cache" / f"{Path(manifest).stem}-{encoder.name}"


def encoded_manifest(
    manifest: str | os.PathLike,
    encoder: FeatureEncoder,
    data_root: str | os.PathLike,
    *,
    progress: bool = False,
) -> list[tuple[Utterance, torch.Tensor | None]]:
    """Every utterance of `manifest` with its features (None where the audio could not be
    encoded), after building the manifest's cache in its default folder. The build gets
    the whole manifest: a build drops the entries it is not given."""
    from corpus.manifest import read_manifest

    utterances = read_manifest(manifest)
    cache = FeatureCache(default_folder(data_root, manifest, encoder), encoder)
    cache.build(utterances, progress=progress)
    return [(u, cache.get(u)) for u in utterances]
