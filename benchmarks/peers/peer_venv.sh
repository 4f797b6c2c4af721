#!/usr/bin/env bash
# Sourced by every peer's install script: one place that creates a peer's venv and installs the CPU build of
# torch into it, so no peer can pull a multi-GB CUDA build.
#
#   source peer_venv.sh; peer_venv <peer> <extra constraint>...
#
# Sets VENV (from <PEER>_VENV, default .venv-<peer> beside this file), PY, PIP (an array) and CONSTRAINTS (a
# file pinning torch==2.13.0, setuptools>=77,<81 and the extra constraints; pass it to every later install).
# torch comes from the local wheel folder only (--no-index --no-deps); <PEER>_ALLOW_TORCH_DOWNLOAD=1 allows the
# index instead. setuptools>=77,<81: older versions break the local CPU torch wheel; 80.x still ships
# pkg_resources.

peer_venv() {
    local peer="$1"
    shift
    local upper
    upper="$(echo "$peer" | tr '[:lower:]' '[:upper:]')"
    local venv_variable="${upper}_VENV" download_variable="${upper}_ALLOW_TORCH_DOWNLOAD"
    local tag="[install_$peer]"
    local here
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    VENV="${!venv_variable:-$here/.venv-$peer}"
    local python="${PYTHON:-python3}"

    if [ ! -x "$VENV/bin/python" ]; then
        echo "$tag creating venv at $VENV"
        "$python" -m venv "$VENV"
    else
        echo "$tag reusing venv at $VENV"
    fi
    PY="$VENV/bin/python"
    PIP=("$PY" -m pip --disable-pip-version-check)
    CONSTRAINTS="$VENV/$peer-constraints.txt"
    printf '%s\n' "torch==2.13.0" "setuptools>=77,<81" "$@" >"$CONSTRAINTS"

    "${PIP[@]}" install -q -c "$CONSTRAINTS" "setuptools>=77,<81" wheel
    if ! "${PIP[@]}" install -q --no-index --no-deps -c "$CONSTRAINTS" "torch==2.13.0"; then
        if [ "${!download_variable:-0}" != "1" ]; then
            echo "$tag no local torch==2.13.0 wheel found (pip find-links); refusing to download one." >&2
            echo "$tag set $download_variable=1 to install torch==2.13.0 from the index." >&2
            return 1
        fi
    fi
    "${PIP[@]}" install -q -c "$CONSTRAINTS" "torch==2.13.0"  # torch's own small dependencies
}
