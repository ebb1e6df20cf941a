#!/usr/bin/env bash
# Build the source distribution and wheel of every distribution in this repository — lbva itself, the plugins
# under embodiments/ and the clients under clients/ — into one folder (default: dist/).
# Each wheel is built from its sdist, so a file missing from an sdist fails here rather than on a user's machine.
# Then, e.g.:  pip install --find-links dist "lbva[metaworld]"
# Usage: scripts/build_dists.sh [OUT_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mkdir -p "${1:-$ROOT/dist}" && cd "${1:-$ROOT/dist}" && pwd)"
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"
PY="${LBVA_PYTHON:-}"
[ -n "$PY" ] || PY="$(find_python 12)" || { echo "[lbva build] no Python >= 3.12 found; set LBVA_PYTHON" >&2; exit 1; }
"$PY" -m uv --version >/dev/null 2>&1 || "$PY" -m pip install -q --disable-pip-version-check uv
for d in "$ROOT" "$ROOT"/embodiments/*/ "$ROOT"/clients/*/; do
  [ -f "$d/pyproject.toml" ] || continue
  echo "[lbva build] $(basename "$d")" >&2
  "$PY" -m uv build -q --out-dir "$OUT" "$d"
done
ls "$OUT"
