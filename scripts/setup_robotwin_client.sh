#!/usr/bin/env bash
# Create (or reuse) `.venv-robotwin`: RoboTwin 2.0 stable_2.0's own Python environment, as far as lbva's RoboTwin
# side needs it — Python 3.10, numpy 1.26, scipy 1.10.1, PyYAML — with this repository's lbva-client and lbva-robotwin
# installed from their folders (a regular install, as a user makes it, not an editable one). tests/robotwin run the
# adapter in it against `lbva serve` in lbva's own environment. RoboTwin itself (SAPIEN, CuRobo, assets) is not
# installed: the tests stand in for its TASK_ENV.
# Idempotent: a second run only checks; it reinstalls when the pins or those packages' files change.
# Usage: scripts/setup_robotwin_client.sh [VENV_DIR]. Prints the venv's python path on stdout when ready.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-robotwin}"
PINS=("numpy==1.26.*" "scipy==1.10.1" "pyyaml>=6")  # RoboTwin's own pins; its scripts read YAML
PKGS=("$ROOT/clients/lbva-client" "$ROOT/embodiments/lbva-robotwin")
CHECK='import sys, numpy, scipy, yaml, lbva_client, lbva_robotwin.deploy_policy; sys.exit(sys.version_info[:2] != (3, 10))'
log() { echo "[robotwin-client setup] $*" >&2; }

# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"

# the stamp covers the pins, this script and every source file of the two packages (they are installed as copies)
want="$( { printf '%s\n' "${PINS[@]}"; cat "${BASH_SOURCE[0]}";
           find "${PKGS[@]}" -type f \( -name '*.py' -o -name '*.toml' -o -name '*.yml' -o -name '*.md' -o -name 'py.typed' \) \
             -not -path '*/build/*' -not -path '*.egg-info/*' | LC_ALL=C sort | xargs cat; } | sha256sum | cut -d' ' -f1)"
STAMP="$VENV/.lbva-robotwin-stamp"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ] && "$VENV/bin/python" -c "$CHECK" >/dev/null 2>&1; then
  echo "$VENV/bin/python"; exit 0
fi

PY="${LBVA_ROBOTWIN_PYTHON:-}"
[ -n "$PY" ] || PY="$(find_python 10 10)" || {
  log "no Python 3.10 found (RoboTwin stable_2.0 pins it; tried python3.10 and pyenv versions)."
  log "Install one (e.g. 'pyenv install 3.10', or 'apt-get install python3.10 python3.10-venv') or set LBVA_ROBOTWIN_PYTHON=/path/to/python3.10."
  exit 1
}
log "python: $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"

is310() { [ -x "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }
export UV_CACHE_DIR="${UV_CACHE_DIR:-${HOME:+$HOME/.cache/uv}}"
[ -n "$UV_CACHE_DIR" ] || export UV_CACHE_DIR="$ROOT/.cache/uv"
UV=""
for c in "$PY" "$(find_python 11 || true)"; do  # uv may live beside another Python (setup.sh installs it for lbva's)
  if [ -n "$c" ] && "$c" -m uv --version >/dev/null 2>&1; then UV="$c"; break; fi
done
if [ -n "$UV" ]; then
  is310 "$VENV/bin/python" || "$UV" -m uv venv -q --clear -p "$PY" "$VENV"
  "$UV" -m uv pip install -q --python "$VENV/bin/python" --reinstall-package lbva-client --reinstall-package lbva-robotwin \
    "${PINS[@]}" "${PKGS[@]}"
else  # no uv: the standard library's venv and pip (slower, same result)
  is310 "$VENV/bin/python" || "$PY" -m venv --clear "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "${PKGS[@]}"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}" "${PKGS[@]}"
fi
"$VENV/bin/python" -c "$CHECK" || { log "the RoboTwin-side packages installed into $VENV but do not import; see above."; exit 1; }
echo "$want" > "$STAMP"
log "ready: $VENV"
echo "$VENV/bin/python"
