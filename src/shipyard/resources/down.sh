#!/usr/bin/env bash
# Stop the local registry and the dockerd that `up.sh` started. Images and the registry's
# storage stay in the state directory; `up.sh` brings everything back.
set -euo pipefail
STATE_DIR=${SHIPYARD_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/shipyard}
say() { printf 'shipyard down: %s\n' "$*"; }
stop_pid() {
  local what=$1 pid=$2
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    say "$what stopped"
  else
    say "$what not running"
  fi
}
stop_pid registry "$(cat "$STATE_DIR/registry.pid" 2>/dev/null || true)"
rm -f "$STATE_DIR/registry.pid"
stop_pid dockerd "$(cat /var/run/docker.pid 2>/dev/null || true)"
