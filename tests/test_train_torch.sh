#!/usr/bin/env bash
# Whole-model gradients and 3 AdamW steps of `pocketllm train` against PyTorch.
# Uses Debian's interpreter explicitly: a python3 earlier on PATH (pyenv, venv)
# does not see Debian's python3-torch. Usage: tests/test_train_torch.sh [BUILD_DIR]
B=${1:-build}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
exec "$PY" "$(dirname "$0")/train_torch.py" "$B"
