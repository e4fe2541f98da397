#!/usr/bin/env bash
# Bring up the Docker engine, buildx and the local registry (see src/shipyard/resources/up.sh).
exec bash "$(dirname "$0")/../src/shipyard/resources/up.sh" "$@"
