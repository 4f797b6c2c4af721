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
#     constraints file, so no later step can pull a multi-GB CUDA build of torch
#     (<PEER>_ALLOW_TORCH_DOWNLOAD=1 allows a download anyway).
#   * rectools[torch]==0.19.0 (newest release; its metadata allows torch<3, pytorch-lightning<=2.5.2, numpy<2).
#   * replay-rec[torch]==0.22.0 (newest release; torch<3, lightning<3, numpy<2.5, polars<2); no spark extra:
#     the runner uses pandas/polars data only.
#   * setuptools>=77,<81: older versions break the local CPU torch wheel.
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
UPPER="$(echo "$PEER" | tr '[:lower:]' '[:upper:]')"
VENV_VARIABLE="${UPPER}_VENV"
DOWNLOAD_VARIABLE="${UPPER}_ALLOW_TORCH_DOWNLOAD"
TAG="[install_$PEER]"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${!VENV_VARIABLE:-$HERE/.venv-$PEER}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "$TAG creating venv at $VENV"
    "$PYTHON" -m venv "$VENV"
else
    echo "$TAG reusing venv at $VENV"
fi

PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

CONSTRAINTS="$VENV/$PEER-constraints.txt"
cat >"$CONSTRAINTS" <<'CONS'
torch==2.13.0
setuptools>=77,<81
CONS

# 1. build tooling, then the CPU torch wheel from the local wheel folder only
"${PIP[@]}" install -q -c "$CONSTRAINTS" "setuptools>=77,<81" wheel
if ! "${PIP[@]}" install -q --no-index --no-deps -c "$CONSTRAINTS" "torch==2.13.0"; then
    if [ "${!DOWNLOAD_VARIABLE:-0}" != "1" ]; then
        echo "$TAG no local torch==2.13.0 wheel found (pip find-links); refusing to download one." >&2
        echo "$TAG set $DOWNLOAD_VARIABLE=1 to install torch==2.13.0 from the index." >&2
        exit 1
    fi
fi
"${PIP[@]}" install -q -c "$CONSTRAINTS" "torch==2.13.0"

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
