#!/usr/bin/env bash
# steering-lens: set-up plus the project's two main commands.
#
#   ./run.sh demo    create .venv if needed, install, run the main job (a real steering demo)
#   ./run.sh test    create .venv if needed, install, run the whole test suite
#
# Environment:
#   TORCH_SPEC      torch requirement installed first (default: the CPU wheel torch==2.13.0;
#                   on a GPU machine use e.g. TORCH_SPEC=torch, or pre-install your CUDA build)
#   STEERING_VENV   virtual environment directory (default: .venv)
#   STEERING_CACHE  model weight cache (default: ~/.cache/steering)
#   PYTHON          interpreter used to create the venv (default: python3)
set -euo pipefail
cd "$(dirname "$0")"

VENV="${STEERING_VENV:-.venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "run.sh: creating $VENV" >&2
    "${PYTHON:-python3}" -m venv "$VENV"
  fi
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
  if ! python -c "import torch" >/dev/null 2>&1; then
    echo "run.sh: installing $TORCH_SPEC (first, so no CUDA build is pulled in)" >&2
    python -m pip install -q "$TORCH_SPEC"
  fi
  local stamp="$VENV/.steering-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "run.sh: installing steering-lens and its test dependencies" >&2
    python -m pip install -q -e ".[test]"
    touch "$stamp"
  fi
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  demo)
    setup
    steer demo "$@"
    ;;
  test)
    setup
    python -m pytest "$@"
    ;;
  *)
    echo "usage: ./run.sh demo [steer demo options] | ./run.sh test [pytest options]" >&2
    exit 2
    ;;
esac
