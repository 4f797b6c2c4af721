#!/usr/bin/env bash
# Create (or refresh) the isolated RecBole 1.2.1 environment used by
# benchmarks/peers/recbole_run.py.  Idempotent: re-running only installs what
# is missing or at the wrong version.
#
#   bash benchmarks/peers/install_recbole.sh            # default location
#   RECBOLE_VENV=/some/where bash benchmarks/peers/install_recbole.sh
#   PYTHON=python3.11 bash benchmarks/peers/install_recbole.sh
#
# Pinning notes (see README.md in this folder):
#   * torch==2.13.0 is installed first and then pinned through a constraints
#     file, so nothing can ever pull a multi-GB CUDA build of torch.
#   * recbole itself is installed with --no-deps: its metadata requires ray,
#     thop, plotly, tabulate, ... which are only used by hyper-parameter
#     tuning / quick_start / FLOPs counting, none of which the runner uses.
#   * setuptools>=77,<81: older versions break the local CPU torch wheel;
#     80.x still ships pkg_resources (used by tensorboard).
#   * pandas<3: RecBole relies on DataFrame.fillna(inplace=True) on column
#     selections, which silently does nothing under pandas 3 copy-on-write.
#   * numpy<2: RecBole 1.2.1 predates numpy 2.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${RECBOLE_VENV:-$HERE/.venv-recbole}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[install_recbole] creating venv at $VENV"
    "$PYTHON" -m venv "$VENV"
else
    echo "[install_recbole] reusing venv at $VENV"
fi

PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

CONSTRAINTS="$VENV/recbole-constraints.txt"
cat >"$CONSTRAINTS" <<'EOF'
torch==2.13.0
setuptools>=77,<81
numpy<2
pandas<3
EOF

# 1. build tooling, then the CPU torch wheel from the local wheel folder only (--no-index --no-deps): a torch
#    from the package index would be a multi-GB CUDA build (set RECBOLE_ALLOW_TORCH_DOWNLOAD=1 to allow it
#    anyway).  torch's own small dependencies (filelock, sympy, ...) then come from the index as usual.
"${PIP[@]}" install -q -c "$CONSTRAINTS" "setuptools>=77,<81" wheel
if ! "${PIP[@]}" install -q --no-index --no-deps -c "$CONSTRAINTS" "torch==2.13.0"; then
    if [ "${RECBOLE_ALLOW_TORCH_DOWNLOAD:-0}" != "1" ]; then
        echo "[install_recbole] no local torch==2.13.0 wheel found (pip find-links); refusing to download one." >&2
        echo "[install_recbole] set RECBOLE_ALLOW_TORCH_DOWNLOAD=1 to install torch==2.13.0 from the index." >&2
        exit 1
    fi
fi
"${PIP[@]}" install -q -c "$CONSTRAINTS" "torch==2.13.0"

# 2. RecBole's real run-time dependencies for training/evaluating sequential
#    models (import of recbole.config/data/trainer/utils/model.*):
#    numpy, scipy, pandas, tqdm, colorlog, colorama, scikit-learn (evaluator),
#    pyyaml (config), tensorboard (recbole.utils imports SummaryWriter),
#    texttable (recbole.utils), psutil (environment table).
"${PIP[@]}" install -q -c "$CONSTRAINTS" \
    "numpy<2" \
    "scipy>=1.6" \
    "pandas>=1.3,<3" \
    "tqdm>=4.48.2" \
    "colorlog==4.7.2" \
    "colorama==0.4.4" \
    "scikit-learn>=0.23.2" \
    "pyyaml>=5.1" \
    "tensorboard>=2.5" \
    "texttable>=0.9" \
    "psutil>=5.9"

# 3. RecBole itself, without its declared (over-broad) dependencies.
"${PIP[@]}" install -q -c "$CONSTRAINTS" --no-deps "recbole==1.2.1"

# 4. Sanity check and versions.
"$PY" - <<'EOF'
import importlib.metadata as md
import sys

import torch

assert torch.__version__.startswith("2.13.0"), torch.__version__
import recbole.config  # noqa: F401
import recbole.data  # noqa: F401
import recbole.trainer  # noqa: F401
from recbole.model.sequential_recommender import BERT4Rec, GRU4Rec, SASRec  # noqa: F401

print("[install_recbole] python", sys.version.split()[0])
for name in ["recbole", "torch", "numpy", "scipy", "pandas", "scikit-learn",
             "pyyaml", "tensorboard", "texttable", "colorlog", "colorama",
             "tqdm", "psutil", "setuptools"]:
    print(f"[install_recbole] {name}=={md.version(name)}")
print("[install_recbole] torch CUDA build:", torch.version.cuda)
EOF
echo "[install_recbole] OK: $VENV"
