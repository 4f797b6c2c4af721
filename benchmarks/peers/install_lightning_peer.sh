#!/usr/bin/env bash
# Create (or refresh) the isolated environment of one Lightning-based peer: rectools or replay.
# Idempotent: re-running only installs what is missing or at the wrong version.
#
#   bash benchmarks/peers/install_lightning_peer.sh rectools   # or: bash benchmarks/peers/install_rectools.sh
#   bash benchmarks/peers/install_lightning_peer.sh replay     # or: bash benchmarks/peers/install_replay.sh
#   RECTOOLS_VENV=/some/where / REPLAY_VENV=/some/where        # venv location (default .venv-<peer> here)
#   PYTHON=python3.11                                           # interpreter that creates it
#
# Pinning notes (see README.md in this folder):
#   * torch==2.13.0 (CPU) is installed first from the local wheel folder and then pinned through a
#     constraints file (peer_venv.sh), so no later step can pull a multi-GB CUDA build of torch
#     (<PEER>_ALLOW_TORCH_DOWNLOAD=1 allows a download anyway).
#   * rectools[torch]==0.19.0 (newest release; its metadata allows torch<3, pytorch-lightning<=2.5.2, numpy<2).
#   * replay-rec[torch]==0.22.0 (newest release; torch<3, lightning<3, numpy<2.5, polars<2); no spark extra:
#     the runner uses pandas/polars data only.
set -euo pipefail

PEER="${1:?usage: install_lightning_peer.sh rectools|replay}"
case "$PEER" in
    rectools)
        REQUIREMENT="rectools[torch]==0.19.0"
        CHECK_IMPORT="from rectools.models import BERT4RecModel, SASRecModel"
        PACKAGES="rectools torch pytorch-lightning numpy pandas scipy pm-implicit pydantic"
        ;;
    replay)
        REQUIREMENT="replay-rec[torch]==0.22.0"
        CHECK_IMPORT="from replay.models.nn.sequential import SasRec"
        PACKAGES="replay-rec torch lightning numpy pandas polars pyarrow scipy scikit-learn"
        ;;
    *)
        echo "[install_lightning_peer] unknown peer '$PEER': rectools or replay" >&2
        exit 2
        ;;
esac
TAG="[install_$PEER]"
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/peer_venv.sh"
peer_venv "$PEER"  # 1. the venv and the CPU torch wheel

# 2. the peer with its torch extra, everything else from its own metadata
"${PIP[@]}" install -q -c "$CONSTRAINTS" "$REQUIREMENT"

# 3. sanity check and versions
"$PY" - "$TAG" "$CHECK_IMPORT" $PACKAGES <<'PYEOF'
import importlib.metadata as md
import sys

import torch

tag, check_import, packages = sys.argv[1], sys.argv[2], sys.argv[3:]
assert torch.__version__.startswith("2.13.0"), torch.__version__
exec(check_import)
print(tag, "python", sys.version.split()[0])
for name in packages:
    print(f"{tag} {name}=={md.version(name)}")
print(tag, "torch CUDA build:", torch.version.cuda)
PYEOF
echo "$TAG OK: $VENV"
