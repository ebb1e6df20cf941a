#!/usr/bin/env bash
# Set up (or reuse) everything lbva needs on this machine: system libraries, a Python >= 3.12,
# a local virtual environment `.venv` with lbva, its extras and the embodiment plugins.
# Idempotent: a second run only checks. Usage: scripts/setup.sh [--quiet]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { echo "[lbva setup] $*" >&2; }

# --- 1. a Python >= 3.12 (LeRobot >= 0.5 needs it) -------------------------------------------
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"
PY="${LBVA_PYTHON:-}"
[ -n "$PY" ] || PY="$(find_python 12)" || {
  log "no Python >= 3.12 found (tried python3.13, python3.12, python3 and pyenv versions)."
  log "Install one (e.g. 'apt-get install python3.12 python3.12-venv', or 'pyenv install 3.12') or set LBVA_PYTHON=/path/to/python3.12."
  exit 1
}
log "python: $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"

# --- 2. system libraries: FFmpeg 5 for torchcodec video decoding, EGL/GL for MuJoCo rendering ----
APT_PKGS="libavutil57 libavcodec59 libavformat59 libavdevice59 libavfilter8 libswscale6 libswresample4 libegl1 libgl1 libglib2.0-0"
missing=""
if command -v dpkg >/dev/null 2>&1; then
  for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
fi
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing system packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    log "missing system packages:$missing — install them with: sudo apt-get install$missing (video decoding falls back to PyAV meanwhile)"
  fi
fi

# --- 3. uv, the virtual environment, the packages ----------------------------------------------
export UV_CACHE_DIR="${UV_CACHE_DIR:-${HOME:+$HOME/.cache/uv}}"
[ -n "$UV_CACHE_DIR" ] || export UV_CACHE_DIR="$ROOT/.cache/uv"
if ! "$PY" -m uv --version >/dev/null 2>&1; then
  log "installing uv for $PY"
  "$PY" -m pip install -q --disable-pip-version-check uv >/dev/null 2>&1 || "$PY" -m pip install -q --user uv
fi
UV=("$PY" -m uv)
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
  log "creating $VENV"
  "${UV[@]}" venv -q --clear -p "$PY" "$VENV"
fi
# Reinstall only when the dependency declarations changed (a stamp of their hash). The distributions beside lbva
# (clients/*: the torch-free client lbva depends on; embodiments/*: the plugins) are installed editable with it.
PLUGINS=$(ls -d clients/*/ embodiments/*/ 2>/dev/null | while read -r d; do [ -f "$d/pyproject.toml" ] && echo "${d%/}"; done || true)
STAMP="$VENV/.lbva-setup-stamp"
want=$(cat pyproject.toml $(for d in $PLUGINS; do echo "$d/pyproject.toml"; done) scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  log "installing lbva and its stack into $VENV (first time: several GB, a few minutes)"
  args=(-e ".[sim,libero,aloha,arms,dev]")
  for d in $PLUGINS; do args+=(-e "$d"); done
  "${UV[@]}" pip install -q --compile-bytecode --python "$VENV/bin/python" "${args[@]}"
  echo "$want" > "$STAMP"
fi
log "ready: $VENV ($("$VENV/bin/python" -c 'import lbva, torch; print("lbva", lbva.__version__, "torch", torch.__version__)'))"
