#!/usr/bin/env bash
# Install vocalis into ./.venv (with the Debian packages it needs) and run the main job.
#   ./setup.sh            install, then run `vocalis check` on the shipped defaults
#   ./setup.sh --no-run   install only
set -euo pipefail
cd "$(dirname "$0")"

python=${PYTHON:-}
if [ -z "$python" ]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
            python=$candidate; break
        fi
    done
fi
[ -n "$python" ] || { echo "setup: vocalis needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

# Debian packages (apt-packages.txt): installed when we are root, else listed.
mapfile -t wanted < <(grep -v '^\s*#' apt-packages.txt | grep -v '^\s*$' || true)
missing=()
for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "setup: please install these Debian packages as root, then run again: ${missing[*]}" >&2
        exit 1
    fi
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
# A first install writes about 6.3 GiB (PyTorch's CUDA build and its libraries). Say so at
# once rather than let pip stop halfway with "No space left on device".
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    free_kib=$(df -Pk .venv | awk 'NR == 2 {print $4}')
    need_kib=$((6600 * 1024))
    if [ "$free_kib" -lt "$need_kib" ]; then
        echo "setup: installing needs about 6.5 GiB free on the disk of $PWD/.venv, only $((free_kib / 1024)) MiB is" >&2
        exit 1
    fi
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev,eval]'
echo "setup: installed; the command line is .venv/bin/vocalis"

if [ "${1:-}" != "--no-run" ]; then
    .venv/bin/vocalis check
fi
