#!/usr/bin/env bash
# Sets up Azote on a fresh Debian/Ubuntu machine: system packages (when run as root), a virtual environment in
# .venv with pinned dependencies (torch 2.13.0, CPU build), and the package itself. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  for script in scripts/native-deps.sh; do
    [ -f "$script" ] && bash "$script"
  done
elif [ -f scripts/native-deps.sh ]; then
  echo "note: not root; install the native games' packages with: sudo bash scripts/native-deps.sh" >&2
fi

"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Azote needs Python 3.11"'
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip
# torch first, alone and pinned: anything that asks for "torch" later then finds it instead of a CUDA build.
"${PIP[@]}" install "torch==2.13.0"
"${PIP[@]}" install -c constraints.txt -e ".[dev]"
# Their declared pins predate numpy 2; they run fine without them (see pyproject.toml).
"${PIP[@]}" install -c constraints.txt --no-deps procgen-mirror gym3 gym gym-notices gym-super-mario-bros
"$VENV/bin/python" -c "import azote.envs, azote.dataset; print('azote installed:', len(azote.envs.list_games()), 'games')"
touch "$VENV/.installed"
