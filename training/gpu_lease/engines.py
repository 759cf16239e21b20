"""The speech engines, packed to render the synthetic corpus on a machine that lacks them.

    python training/gpu_lease/engines.py bundle DIR [--engine espeak --engine flite]
    DIR/bin/espeak-ng -v en-us -w out.wav "text"     # on the device, after unpacking

A lent GPU's image has no espeak-ng or flite and cannot install them, and the corpus they
render is too big to travel (50 h of audio against 64 MB a call), while its text is small.
So the engines travel instead: each binary with the shared libraries it loads (`ldd`,
except the C library itself, which every Linux has) and the data it reads. `bin/NAME` is a
wrapper that points only that process at the packed libraries, so nothing else on the
device (PyTorch above all) sees them. The packed binaries are this machine's, so a corpus
re-rendered with them is the one rendered here, sample for sample.

festival is left out: its Scheme library and voices are 24 MB and its `text2wave` finds
them at a path compiled in. Its three voices are 11 % of the training audio.
"""

from __future__ import annotations

import argparse
import shutil
import stat
import subprocess
from pathlib import Path

from corpus.voices import ENGINE_BINARIES

# The C library and its loader come from the device: a copy from elsewhere breaks them.
HOST_LIBRARIES = ("libc.so", "libm.so", "libdl.so", "libpthread.so", "librt.so", "ld-linux",
                  "libresolv.so", "libutil.so", "linux-vdso")  # fmt: skip
ESPEAK_DATA_KEEP = ("phontab", "phonindex", "phondata", "intonations", "en_dict", "lang", "voices")
PACKABLE = ("espeak", "flite")

WRAPPER = """#!/bin/sh
# {name}, with the libraries packed beside it (training/gpu_lease/engines.py)
case "$0" in */*) self=$0 ;; *) self=$(command -v "$0") ;; esac  # run by name via PATH
here=$(cd "${{self%/*}}/.." && pwd)  # builtins only: the PATH may hold nothing else
LD_LIBRARY_PATH="$here/lib" ESPEAK_DATA_PATH="$here/share" exec "$here/libexec/{name}" "$@"
"""


def shared_libraries(binary: Path) -> list[Path]:
    """The libraries `binary` loads, by `ldd`, without the host's own C library."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        name, arrow, rest = line.strip().partition(" => ")
        if not arrow or not rest.startswith("/"):
            continue
        if any(name.startswith(h) for h in HOST_LIBRARIES):
            continue
        libs.append(Path(rest.split(" (")[0]))
    return libs


def espeak_data_dir() -> Path:
    """espeak-ng's data folder, as the installed binary reports it."""
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True)
    return Path(out.stdout.split("Data at:")[1].strip())


def bundle(out: Path, engines: tuple[str, ...] = PACKABLE) -> dict[str, int]:
    """Pack `engines` into `out` (replaced); returns bytes per part."""
    for engine in engines:
        if engine not in PACKABLE:
            raise ValueError(f"cannot pack {engine!r}: only {', '.join(PACKABLE)}")
    shutil.rmtree(out, ignore_errors=True)
    for sub in ("bin", "libexec", "lib", "share"):
        (out / sub).mkdir(parents=True)
    for engine in engines:
        name = ENGINE_BINARIES[engine]
        found = shutil.which(name)
        if found is None:
            raise FileNotFoundError(f"{name} is not installed here: nothing to pack")
        binary = Path(found).resolve()
        shutil.copy2(binary, out / "libexec" / name)
        for lib in shared_libraries(binary):
            shutil.copy2(lib.resolve(), out / "lib" / lib.name)  # under the name ldd asked
        wrapper = out / "bin" / name
        wrapper.write_text(WRAPPER.format(name=name))
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        if engine == "espeak":
            src = espeak_data_dir()
            dst = out / "share" / "espeak-ng-data"
            dst.mkdir()
            for part in ESPEAK_DATA_KEEP:
                path = src / part
                if path.is_dir():
                    shutil.copytree(path, dst / part)
                else:
                    shutil.copy2(path, dst / part)
    return {sub: _size(out / sub) for sub in ("libexec", "lib", "share")}


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bundle", help="pack the engines into DIR")
    b.add_argument("out", type=Path)
    b.add_argument("--engine", action="append", choices=PACKABLE, help="default: all")
    args = p.parse_args()
    sizes = bundle(args.out, tuple(args.engine or PACKABLE))
    print(", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items()))


if __name__ == "__main__":
    main()
