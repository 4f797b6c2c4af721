#!/usr/bin/env bash
# The replay peer's environment: see install_lightning_peer.sh (one script for both Lightning peers).
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/install_lightning_peer.sh" replay "$@"
