#!/usr/bin/env bash
# Create (or refresh) the isolated RePlay environment used by benchmarks/peers/replay_run.py.
# Idempotent: re-running only installs what is missing or at the wrong version.
#
#   bash benchmarks/peers/install_replay.sh            # default location benchmarks/peers/.venv-replay
#   REPLAY_VENV=/some/where bash benchmarks/peers/install_replay.sh
#   PYTHON=python3.11 bash benchmarks/peers/install_replay.sh
#
# Pinning notes (see README.md in this folder):
#   * torch==2.13.0 (CPU) is installed first from the local wheel folder and then pinned through a
#     constraints file, so no later step can pull a multi-GB CUDA build of torch.
#   * replay-rec[torch]==0.22.0 (newest release; its metadata allows torch<3, lightning<3, numpy<2.5, polars<2).
#     The spark extra is not installed: the runner uses pandas/polars data only.
#   * setuptools>=77,<81: older versions break the local CPU torch wheel.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${REPLAY_VENV:-$HERE/.venv-replay}"
PYTHON="${PYTHON:-python3}"
REPLAY_VERSION="0.22.0"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[install_replay] creating venv at $VENV"
    "$PYTHON" -m venv "$VENV"
else
    echo "[install_replay] reusing venv at $VENV"
fi

PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

CONSTRAINTS="$VENV/replay-constraints.txt"
cat >"$CONSTRAINTS" <<'CONS'
torch==2.13.0
setuptools>=77,<81
CONS

# 1. build tooling, then the CPU torch wheel from the local wheel folder only (a torch from the package index
#    would be a multi-GB CUDA build; REPLAY_ALLOW_TORCH_DOWNLOAD=1 allows it anyway).
"${PIP[@]}" install -q -c "$CONSTRAINTS" "setuptools>=77,<81" wheel
if ! "${PIP[@]}" install -q --no-index --no-deps -c "$CONSTRAINTS" "torch==2.13.0"; then
    if [ "${REPLAY_ALLOW_TORCH_DOWNLOAD:-0}" != "1" ]; then
        echo "[install_replay] no local torch==2.13.0 wheel found (pip find-links); refusing to download one." >&2
        echo "[install_replay] set REPLAY_ALLOW_TORCH_DOWNLOAD=1 to install torch==2.13.0 from the index." >&2
        exit 1
    fi
fi
"${PIP[@]}" install -q -c "$CONSTRAINTS" "torch==2.13.0"

# 2. RePlay with its torch extra (lightning, pytorch-optimizer), everything else from its own metadata.
"${PIP[@]}" install -q -c "$CONSTRAINTS" "replay-rec[torch]==$REPLAY_VERSION"

# 3. Sanity check and versions.
"$PY" - <<'PYEOF'
import importlib.metadata as md
import sys

import torch

assert torch.__version__.startswith("2.13.0"), torch.__version__
from replay.models.nn.sequential import SasRec  # noqa: F401

print("[install_replay] python", sys.version.split()[0])
for name in ["replay-rec", "torch", "lightning", "numpy", "pandas", "polars", "pyarrow", "scipy", "scikit-learn"]:
    print(f"[install_replay] {name}=={md.version(name)}")
print("[install_replay] torch CUDA build:", torch.version.cuda)
PYEOF
echo "[install_replay] OK: $VENV"
