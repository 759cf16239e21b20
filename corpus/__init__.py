"""The speech data layer: manifests, importers, the synthetic corpus, splits, batching, cache.

Modules (import what you need; nothing heavy is imported here):
- `manifest`: `Utterance`, `read_manifest`, `write_manifest` (JSONL, one utterance a line)
- `importers`: LJ Speech, LibriSpeech/LibriTTS, VCTK, plain folder, spoken digits
- `synth_plan`, `synth`, `voices`, `render_check`: the synthetic multi-speaker corpus
- `sentences`, `vocabulary`, `phonemes`, `text`: generated text, coverage, normalisation
- `splits`: held-out speakers / texts / utterances
- `batching`: `BucketBatchSampler`; `dataset`: `ManifestDataset`, `collate_audio`
- `cache`: `FeatureEncoder`, `ResampleEncoder`, `FeatureCache` (safetensors shards)
- `stats`: hours per speaker and split, sample rates, text coverage
"""
