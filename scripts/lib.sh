# Shared by the set-up scripts (sourced, not run).

# find_python MINOR [MAX_MINOR]: print a Python 3.MINOR .. 3.MAX_MINOR (no upper bound by default) that really runs.
# A pyenv shim on PATH may exist and fail, and in a bare environment neither pyenv nor $HOME may be set, so every
# candidate is executed.
find_python() {
  local minor="$1" max="${2:-99}" c
  ok() { [ -n "$1" ] && "$1" -c "import sys; sys.exit(not (3, $minor) <= sys.version_info[:2] <= (3, $max))" >/dev/null 2>&1; }
  for c in python3.13 python3.12 python3.11 python3.10 python3; do
    if command -v "$c" >/dev/null 2>&1 && ok "$c"; then command -v "$c"; return 0; fi
  done
  # the user's home from the account database when $HOME is unset (a bare environment)
  local home="${HOME:-$(getent passwd "$(id -u)" 2>/dev/null | cut -d: -f6)}"
  for c in "${PYENV_ROOT:-$home/.pyenv}"/versions/3.1[0-9]*/bin/python "$home/.pyenv"/versions/3.1[0-9]*/bin/python \
           /usr/local/bin/python3.1[0-9] /usr/bin/python3.1[0-9]; do
    if [ -x "$c" ] && ok "$c"; then echo "$c"; return 0; fi
  done
  return 1
}
