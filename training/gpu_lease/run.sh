#!/usr/bin/env bash
# One GPU lease: VALL-E, the codec and the ASR side by side on one GPU (JOBS picks them),
# each bounded by MINUTES of training, then everything worth keeping packed into $OUT
# (split in 15 MB parts: the device tool brings back at most 8 files of 16 MiB).
# Needs .lease/ from training/gpu_lease/prepare.py and the wheels in .whl/ (README of the
# device tool). Usage on the device: bash training/gpu_lease/run.sh [MINUTES]
# Environment: JOBS ("valle codec", or one of them), VALLE_CONFIG, CODEC_CONFIG, VALLE_INIT
# (continue from a VALL-E checkpoint, e.g. models/tts/valle.safetensors, or its int8 transport
# copy .lease/valle_init.q8.safetensors from prepare.py --valle-init), CODEC_INIT, ASR_CONFIG,
# ASR_INIT (e.g. .lease/asr_init.safetensors from prepare.py --asr-init), RENDER_SECONDS.
# The ASR job (prepare.py --asr) first renders the synthetic corpora with the packed engines
# for RENDER_SECONDS (default 150) before any job starts: count it in the call's time.
# A job still running a minute past MINUTES is stopped, and its newest checkpoint exported.
set -u
MIN=${1:-7}
OUT=${OUT:-/tmp/lease_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -c "import soundfile, soxr" 2>/dev/null ||  # not in the device image: carried wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl ||
  exit 2
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export VOCALIS_DATA=/tmp/vdata RUNS=/tmp/lease_runs
mkdir -p "$VOCALIS_DATA" "$RUNS/valle" "$RUNS/codec"
tar -xJf .lease/data.tar.xz -C "$VOCALIS_DATA" || exit 2
[ -f .lease/phonemes.json ] && cp .lease/phonemes.json "$RUNS/valle/"
if [ -f "$VOCALIS_DATA/codec_opus.jsonl" ] || [ -d "$VOCALIS_DATA/asr_opus" ]; then
  python3 training/gpu_lease/decode.py "$VOCALIS_DATA" || exit 2  # --codec-opus, --asr: WAV
fi
GUARD=$(python3 -c "print(int(float('$MIN') * 60 + 60))")
nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

if [[ "${VALLE_INIT:-}" == *.q8.safetensors ]]; then  # int8 in transit: back to fp32 here
  python3 training/gpu_lease/transport.py unpack "$VALLE_INIT" /tmp/valle_init || exit 2
  VALLE_INIT=/tmp/valle_init.safetensors
fi
JOBS=${JOBS:-valle codec}  # any of valle, codec and asr
VALLE_CONFIG=${VALLE_CONFIG:-training/configs/valle_lease.json}
CODEC_CONFIG=${CODEC_CONFIG:-training/configs/codec_istft_gan_lease.json}
ASR_CONFIG=${ASR_CONFIG:-training/configs/asr_lease.json}
V= C= A=
if [[ " $JOBS " == *" asr "* ]]; then  # the packed engines render the corpora's training rows
  mkdir -p "$RUNS/asr"
  PATH="$VOCALIS_DATA/engines/bin:$PATH" python3 training/gpu_lease/render.py \
    "$VOCALIS_DATA/render" "$VOCALIS_DATA" --seconds "${RENDER_SECONDS:-150}" \
    >"$OUT/render.log" 2>&1 || { tail -n 30 "$OUT/render.log"; exit 2; }
  tail -n 1 "$OUT/render.log"
  timeout "$GUARD" python3 -m vocalis train asr --config "$ASR_CONFIG" \
    --out "$RUNS/asr" --minutes "$MIN" ${ASR_INIT:+--init "$ASR_INIT"} >"$OUT/asr.log" 2>&1 &
  A=$!
fi
if [[ " $JOBS " == *" valle "* ]]; then
  timeout "$GUARD" python3 -m vocalis train valle --config "$VALLE_CONFIG" \
    --out "$RUNS/valle" --minutes "$MIN" ${VALLE_INIT:+--init "$VALLE_INIT"} >"$OUT/valle.log" 2>&1 &
  V=$!
fi
if [[ " $JOBS " == *" codec "* ]]; then
  timeout "$GUARD" python3 -m vocalis train codec --config "$CODEC_CONFIG" \
    --init "${CODEC_INIT:-models/codec/codec.safetensors}" --out "$RUNS/codec" --minutes "$MIN" \
    >"$OUT/codec.log" 2>&1 &
  C=$!
fi
# Fail fast: a job that fails in its first two minutes stops the lease, so it can be rerun.
pending="$V $C $A"
for _ in $(seq 24); do
  sleep 5
  still=""
  for p in $pending; do
    if kill -0 "$p" 2>/dev/null; then
      still="$still $p"
    elif ! wait "$p"; then
      echo "a job failed early"; tail -n 30 "$OUT"/*.log; kill $V $C $A 2>/dev/null; exit 3
    fi
  done
  pending=$still
  [ -z "${pending// /}" ] && break
done
alive() { for p in "$@"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
while alive $V $C $A; do
  sleep 15
  echo "$(date +%T) gpu $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"
  for r in valle codec asr; do
    [ -f "$RUNS/$r/log.jsonl" ] && echo "  $r $(tail -n 1 "$RUNS/$r/log.jsonl" | cut -c 1-160)"
  done
done
wait
for job in "valle $VALLE_CONFIG" "codec $CODEC_CONFIG" "asr $ASR_CONFIG"; do  # stopped by the guard:
  set -- $job                                                  # export the newest checkpoint
  if [ -d "$RUNS/$1/checkpoints" ] && [ ! -f "$RUNS/$1/model.safetensors" ]; then
    python3 -m vocalis train "$1" --config "$2" --out "$RUNS/$1" --export >>"$OUT/$1.log" 2>&1
  fi
done
tail -n 3 "$OUT"/*.log
python3 training/gpu_lease/collect.py "$RUNS/valle" "$RUNS/codec" /tmp/collect "$RUNS/asr"
(cd /tmp/collect && ls -l && tar -cf - . | split -b 15M - "$OUT/result.tar.part-")
ls -l "$OUT"
