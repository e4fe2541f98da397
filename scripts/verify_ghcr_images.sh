#!/usr/bin/env bash
# Verify a pushed release from its registry (GHCR or any other), e.g.
#   GITHUB_TOKEN=… scripts/verify_ghcr_images.sh 20250111-656873b3
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 -m shipyard verify "$@"
