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
#     file (peer_venv.sh), so nothing can ever pull a multi-GB CUDA build of torch.
#   * recbole itself is installed with --no-deps: its metadata requires ray,
#     thop, plotly, tabulate, ... which are only used by hyper-parameter
#     tuning / quick_start / FLOPs counting, none of which the runner uses.
#   * pandas<3: RecBole relies on DataFrame.fillna(inplace=True) on column
#     selections, which silently does nothing under pandas 3 copy-on-write.
#   * numpy<2: RecBole 1.2.1 predates numpy 2.
set -euo pipefail

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/peer_venv.sh"
# 1. the venv and the CPU torch wheel (peer_venv.sh), with RecBole's extra pins
peer_venv recbole "numpy<2" "pandas<3"

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
