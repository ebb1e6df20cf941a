#!/usr/bin/env bash
# Set up everything (idempotent) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
[ -x scripts/setup_openpi_client.sh ] && bash scripts/setup_openpi_client.sh
bash scripts/setup_robotwin_client.sh >/dev/null  # .venv-robotwin: RoboTwin's Python 3.10 env for tests/robotwin
export MUJOCO_GL="${MUJOCO_GL:-egl}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
