#!/usr/bin/env bash
exec bash "$(dirname "$0")/../src/shipyard/resources/down.sh" "$@"
