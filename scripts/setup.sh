#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine:
# the Debian packages (eSpeak NG, libusb, libGL, sox, Chromium for browser tests)
# and a virtual environment in .venv from pyproject.toml (exact pins).
# Usage: bash scripts/setup.sh [dev|train]   (dev adds the test tools; train makes .venv-train)
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"

debs=(espeak-ng libespeak-ng1 libusb-1.0-0 libgl1 libgomp1 libglib2.0-0 libportaudio2 sox)
[ "$extra" = "dev" ] && debs+=(chromium)
[ "$extra" = "train" ] && debs+=(flite)  # more synthetic voices for speech/train_kws.py
missing=()
for d in "${debs[@]}"; do dpkg -s "$d" >/dev/null 2>&1 || missing+=("$d"); done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

py="${PYTHON:-}"
if [ -z "$py" ]; then
  for c in python3.11 "$HOME/.pyenv/versions/3.11.7/bin/python3" python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; assert sys.version_info[:2]==(3,11)' 2>/dev/null; then py="$c"; break; fi
  done
fi
[ -n "$py" ] || { echo "setup: Python 3.11 is required (set PYTHON=...)" >&2; exit 1; }
# Training (PyTorch, onnx) lives in its own environment: onnx needs a newer protobuf than
# mediapipe 0.10.14 accepts, and PyTorch is never a runtime dependency.
venv=.venv; [ "$extra" = "train" ] && venv=.venv-train
if [ ! -x "$venv/bin/python" ]; then
  # a fresh environment takes about 3.4 GB with the dev extra (torch 0.75 GB), 2.6 without:
  # below these floors pip would surely fail half-way ("No space left on device"): say so
  need_mb=2400; [ -n "$extra" ] && need_mb=3200
  free_mb=$(df -Pm . | awk 'NR==2 {print $4}')
  if [ -n "$free_mb" ] && [ "$free_mb" -lt "$need_mb" ]; then
    echo "setup: only ${free_mb} MB free on $(df -P . | awk 'NR==2 {print $6}') for $PWD/$venv;" \
         "it needs at least ${need_mb} MB (extra='${extra}'): free some space and run again" >&2
    exit 1
  fi
  "$py" -m venv "$venv"
fi
if [ "$extra" = "train" ]; then
  # onnx 1.23 needs protobuf >= 6, mediapipe 0.10.14 < 5: pip refuses both in one
  # environment. Training uses neither mediapipe nor its protobuf, so the training
  # environment gets every other pin from pyproject.toml and the package without deps.
  mapfile -t deps < <("$venv/bin/python" -c 'import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
for d in p["dependencies"] + p["optional-dependencies"]["train"]:
    if not d.startswith("mediapipe"):
        print(d)')
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${deps[@]}"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .
else
  spec="."; [ -n "$extra" ] && spec=".[$extra]"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$spec"
fi
# the kws speech engine's pre-trained embedding models (pyproject extra "kws"), without
# its unused dependencies (see pyproject.toml)
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps "openwakeword==0.5.1"
# Moonshine tiny's encoder for the single-word head (pyproject extra "moon"; speech/moonshine.py
# reads the file, never imports the package): without its dependencies, which are for the
# package's own microphone and downloads
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps "moonshine-voice==0.1.0"
echo "setup: ready ($venv, extra='${extra}')"
