#!/usr/bin/env bash
# Create (or refresh) the isolated RecTools environment used by benchmarks/peers/rectools_run.py.
# Idempotent: re-running only installs what is missing or at the wrong version.
#
#   bash benchmarks/peers/install_rectools.sh            # default location benchmarks/peers/.venv-rectools
#   RECTOOLS_VENV=/some/where bash benchmarks/peers/install_rectools.sh
#   PYTHON=python3.11 bash benchmarks/peers/install_rectools.sh
#
# Pinning notes (see README.md in this folder):
#   * torch==2.13.0 (CPU) is installed first from the local wheel folder and then pinned through a
#     constraints file, so no later step can pull a multi-GB CUDA build of torch.
#   * rectools[torch]==0.19.0 (newest release; its metadata allows torch<3, pytorch-lightning<=2.5.2, numpy<2).
#   * setuptools>=77,<81: older versions break the local CPU torch wheel.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${RECTOOLS_VENV:-$HERE/.venv-rectools}"
PYTHON="${PYTHON:-python3}"
RECTOOLS_VERSION="0.19.0"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[install_rectools] creating venv at $VENV"
    "$PYTHON" -m venv "$VENV"
else
    echo "[install_rectools] reusing venv at $VENV"
fi

PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

CONSTRAINTS="$VENV/rectools-constraints.txt"
cat >"$CONSTRAINTS" <<'CONS'
torch==2.13.0
setuptools>=77,<81
CONS

# 1. build tooling, then the CPU torch wheel from the local wheel folder only (a torch from the package index
#    would be a multi-GB CUDA build; RECTOOLS_ALLOW_TORCH_DOWNLOAD=1 allows it anyway).
"${PIP[@]}" install -q -c "$CONSTRAINTS" "setuptools>=77,<81" wheel
if ! "${PIP[@]}" install -q --no-index --no-deps -c "$CONSTRAINTS" "torch==2.13.0"; then
    if [ "${RECTOOLS_ALLOW_TORCH_DOWNLOAD:-0}" != "1" ]; then
        echo "[install_rectools] no local torch==2.13.0 wheel found (pip find-links); refusing to download one." >&2
        echo "[install_rectools] set RECTOOLS_ALLOW_TORCH_DOWNLOAD=1 to install torch==2.13.0 from the index." >&2
        exit 1
    fi
fi
"${PIP[@]}" install -q -c "$CONSTRAINTS" "torch==2.13.0"

# 2. RecTools with its torch extra (pytorch-lightning), everything else from its own metadata.
"${PIP[@]}" install -q -c "$CONSTRAINTS" "rectools[torch]==$RECTOOLS_VERSION"

# 3. Sanity check and versions.
"$PY" - <<'PYEOF'
import importlib.metadata as md
import sys

import torch

assert torch.__version__.startswith("2.13.0"), torch.__version__
from rectools.models import BERT4RecModel, SASRecModel  # noqa: F401

print("[install_rectools] python", sys.version.split()[0])
for name in ["rectools", "torch", "pytorch-lightning", "numpy", "pandas", "scipy", "pm-implicit", "pydantic"]:
    print(f"[install_rectools] {name}=={md.version(name)}")
print("[install_rectools] torch CUDA build:", torch.version.cuda)
PYEOF
echo "[install_rectools] OK: $VENV"
