#!/usr/bin/env bash
# Bring up what shipyard needs on this machine: a Docker engine with buildx and the
# containerd image store, a local OCI registry on 127.0.0.1:5000, mmdebstrap for
# local base images, and qemu-user (binfmt_misc) for linux/arm64 ones on an x86_64 host.
# Idempotent: installs only what is missing, starts only what is down.
#
# On Debian as root it installs packages itself; anywhere else it uses what is there
# and says exactly what is missing.
set -euo pipefail

STATE_DIR=${SHIPYARD_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/shipyard}
REGISTRY_ADDR=${SHIPYARD_REGISTRY_ADDR:-127.0.0.1:5000}
WAIT_SECONDS=${SHIPYARD_UP_TIMEOUT:-60}
mkdir -p "$STATE_DIR"

say() { printf 'shipyard up: %s\n' "$*"; }
die() { printf 'shipyard up: error: %s\n' "$*" >&2; exit 1; }

# Alive and not a zombie (a killed session's children may never be reaped here).
is_running() {
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != "Z" ]
}

is_root() { [ "$(id -u)" = 0 ]; }
is_debian() { [ -r /etc/debian_version ] && command -v apt-get >/dev/null; }
can_install() { is_root && is_debian; }

# Poll a command until it succeeds or the deadline passes (no fixed sleeps).
wait_for() {
  local what=$1; shift
  local deadline=$((SECONDS + WAIT_SECONDS)) delay=0.05
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep "$delay"
    delay=$(awk -v d="$delay" 'BEGIN { d *= 2; if (d > 1) d = 1; print d }')
  done
  say "$what ready"
}

# --- packages ------------------------------------------------------------------
APT_UPDATED=0
apt_update_once() {
  if [ "$APT_UPDATED" = 0 ]; then
    apt-get update -qq
    APT_UPDATED=1
  fi
}

# Debian trixie as an extra source on the bookworm mirror, pinned low so that only
# what we ask for explicitly (docker.io/trixie …) comes from it.
add_trixie_source() {
  local src=/etc/apt/sources.list.d/shipyard-trixie.sources
  local pin=/etc/apt/preferences.d/shipyard-trixie
  if [ ! -f "$pin" ]; then
    printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' >"$pin"
  fi
  if [ ! -f "$src" ]; then
    local mirror
    mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    if [ -z "$mirror" ]; then
      mirror=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
    fi
    [ -n "$mirror" ] || die "cannot find the bookworm mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
    printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$mirror" >"$src"
    APT_UPDATED=0
  fi
}

docker_ok() { [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] && /usr/bin/docker buildx version >/dev/null 2>&1; }
# the `docker compose` v2 plugin: `shipyard compose-file` projects are checked (and deployed) with it
compose_ok() { [ -x /usr/bin/docker ] && /usr/bin/docker compose version >/dev/null 2>&1; }

install_packages() {
  local missing=()
  docker_ok || missing+=("docker engine + buildx")
  compose_ok || missing+=("docker compose")
  [ -x /usr/bin/docker-registry ] || missing+=("docker-registry")
  command -v mmdebstrap >/dev/null || missing+=("mmdebstrap")
  [ -x /usr/bin/tini-static ] || missing+=("tini")
  command -v skopeo >/dev/null || missing+=("skopeo")
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! can_install; then
    die "missing: ${missing[*]}. Install them (Debian: docker.io docker-buildx docker-cli docker-compose docker-registry mmdebstrap) or run as root on Debian"
  fi
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! docker_ok; then
    add_trixie_source
    apt_update_once
    apt-get install -y -qq --no-install-recommends \
      docker.io/trixie docker-buildx/trixie docker-cli/trixie >/dev/null
  fi
  if ! compose_ok; then
    add_trixie_source
    apt_update_once
    apt-get install -y -qq --no-install-recommends docker-compose/trixie >/dev/null
  fi
  local rest=()
  [ -x /usr/bin/docker-registry ] || rest+=(docker-registry)
  command -v mmdebstrap >/dev/null || rest+=(mmdebstrap)
  [ -x /usr/bin/tini-static ] || rest+=(tini)
  command -v skopeo >/dev/null || rest+=(skopeo)
  if [ ${#rest[@]} -gt 0 ]; then
    apt_update_once
    apt-get install -y -qq --no-install-recommends "${rest[@]}" >/dev/null
  fi
}

# A headless browser for the test that renders `shipyard report`'s HTML page (and a font for its
# screenshot). Only the tests need it, so without root on Debian it is named, not required.
chromium_ok() { command -v chromium >/dev/null && [ -d /usr/share/fonts/truetype/dejavu ]; }

install_browser() {
  chromium_ok && return 0
  if ! can_install; then
    say "note: chromium (and fonts-dejavu-core) missing: tests/integration/test_report.py needs them"
    return 0
  fi
  say "installing: chromium fonts-dejavu-core"
  export DEBIAN_FRONTEND=noninteractive
  apt_update_once
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
}

# Tools Debian ships from trixie on, which shipyard does not need to run but its interop tests check it
# against (and anyone can use on a release): cosign (shipyard writes signatures and attestations itself,
# in the layout cosign reads: tests/integration/test_cosign_interop.py) and oras (it pulls a model's
# files: tests/integration/test_modelpack.py). Without root on Debian each is named, not required.
install_from_trixie() { # NAME TEST
  command -v "$1" >/dev/null && "$1" version >/dev/null 2>&1 && return 0
  if ! can_install; then
    say "note: $1 missing: $2 needs it (Debian: $1 from trixie)"
    return 0
  fi
  say "installing: $1"
  export DEBIAN_FRONTEND=noninteractive
  add_trixie_source
  apt_update_once
  apt-get install -y -qq --no-install-recommends "$1/trixie" >/dev/null
}
install_cosign() { install_from_trixie cosign tests/integration/test_cosign_interop.py; }
install_oras() { install_from_trixie oras tests/integration/test_modelpack.py; }

# --- linux/arm64 on this host --------------------------------------------------
# mmdebstrap runs an arm64 base's maintainer scripts, and BuildKit a multi-platform profile's
# RUN steps, under qemu-user: the kernel hands aarch64 programs to it through binfmt_misc.
# Only arm64 builds need it, so without root on Debian it is named, not required.
BINFMT=/proc/sys/fs/binfmt_misc
QEMU_AARCH64_CONF=/usr/lib/binfmt.d/qemu-aarch64.conf

is_arm64_host() { [ "$(uname -m)" = aarch64 ]; }

install_emulation() {
  is_arm64_host && return 0
  local missing=()
  [ -x /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
  command -v arch-test >/dev/null || missing+=(arch-test)
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! can_install; then
    say "note: ${missing[*]} missing: linux/arm64 local bases and multi-platform profiles need them"
    return 0
  fi
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt_update_once
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Registered by hand: a container has no systemd-binfmt (or binfmt-support) to read the .conf.
# The entry carries flag F, so the kernel keeps the interpreter open for chroots and containers.
register_binfmt() {
  if is_arm64_host; then
    say "arm64 programs run natively (no qemu-aarch64 needed)"
    return 0
  fi
  local need="linux/arm64 builds need it"
  if [ ! -e "$BINFMT/register" ]; then
    if ! is_root; then
      say "note: binfmt_misc is not mounted on $BINFMT ($need): run this script as root"
      return 0
    fi
    if ! mount -t binfmt_misc binfmt_misc "$BINFMT"; then
      say "note: cannot mount binfmt_misc on $BINFMT ($need): give this container the privilege, or mount it on the host"
      return 0
    fi
  fi
  local entry=$BINFMT/qemu-aarch64
  if [ -e "$entry" ] && [ "$(head -1 "$entry")" = enabled ]; then
    say "qemu-aarch64 already registered in binfmt_misc"
  elif ! is_root; then
    say "note: qemu-aarch64 is not registered (or disabled) in binfmt_misc ($need): run this script as root"
  elif [ -e "$entry" ]; then
    echo 1 >"$entry"
    say "qemu-aarch64 was disabled in binfmt_misc: enabled it"
  elif [ ! -r "$QEMU_AARCH64_CONF" ]; then
    say "note: $QEMU_AARCH64_CONF missing ($need): install qemu-user-static"
  else
    grep -m1 '^:qemu-aarch64:' "$QEMU_AARCH64_CONF" >"$BINFMT/register" \
      || die "could not register qemu-aarch64 from $QEMU_AARCH64_CONF in $BINFMT/register"
    say "registered qemu-aarch64 in binfmt_misc (from $QEMU_AARCH64_CONF)"
  fi
}

# --- engine --------------------------------------------------------------------
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker || true)

engine_up() { "$DOCKER" info >/dev/null 2>&1; }

start_engine() {
  if engine_up; then
    say "engine already running"
    return 0
  fi
  can_install || die "the Docker engine is not reachable (docker info failed) and I cannot start it without root: start dockerd"
  mkdir -p /etc/docker
  if ! grep -q '"containerd-snapshotter": *true' /etc/docker/daemon.json 2>/dev/null; then
    printf '{"features":{"containerd-snapshotter":true}}\n' >/etc/docker/daemon.json
  fi
  # A killed session leaves pid files and sockets behind (and, where nothing reaps them,
  # zombie processes that still answer kill -0); dockerd refuses to start on them.
  for pidfile in /var/run/docker.pid /run/docker/containerd/containerd.pid; do
    if [ -f "$pidfile" ] && ! is_running "$(cat "$pidfile" 2>/dev/null)"; then
      rm -f "$pidfile"
    fi
  done
  if is_running "$(cat /var/run/docker.pid 2>/dev/null)"; then
    say "a dockerd is running but not answering; waiting for it"
    wait_for "engine" engine_up && return 0
    die "dockerd (pid $(cat /var/run/docker.pid)) does not answer; stop it (scripts/down.sh) and retry"
  fi
  rm -f /var/run/docker.sock /run/docker/containerd/containerd.sock
  say "starting dockerd (log: $STATE_DIR/dockerd.log)"
  setsid nohup /usr/sbin/dockerd >"$STATE_DIR/dockerd.log" 2>&1 </dev/null &
  wait_for "engine" engine_up || die "dockerd did not answer within ${WAIT_SECONDS}s; see $STATE_DIR/dockerd.log"
}

# --- registry ------------------------------------------------------------------
registry_up() { curl -fs -o /dev/null "http://$REGISTRY_ADDR/v2/"; }

# The registry's config: deletes enabled, so `shipyard prune` can delete by digest (and
# `docker-registry garbage-collect` then frees the blobs).
registry_config() {
  cat <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE_DIR/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
YML
}

# Write the config when what is on disk differs (a machine set up by an older shipyard has no
# delete section); true when it was (re)written.
write_registry_config() {
  local cfg=$1 wanted
  wanted=$(registry_config)
  [ -f "$cfg" ] && [ "$(cat "$cfg")" = "$wanted" ] && return 1
  printf '%s\n' "$wanted" >"$cfg"
}

start_registry() {
  local cfg=$STATE_DIR/registry.yml pidfile=$STATE_DIR/registry.pid
  if registry_up; then
    if write_registry_config "$cfg"; then
      # never restarted under a running user: the new config applies at the next start
      say "registry already serving on $REGISTRY_ADDR; rewrote $cfg (deletes enabled): restart it (shipyard down && shipyard up) for it to apply"
    else
      say "registry already serving on $REGISTRY_ADDR"
    fi
    return 0
  fi
  if is_running "$(cat "$pidfile" 2>/dev/null)"; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
  fi
  mkdir -p "$STATE_DIR/registry"
  write_registry_config "$cfg" || true
  say "starting registry on $REGISTRY_ADDR (storage: $STATE_DIR/registry)"
  setsid nohup docker-registry serve "$cfg" >"$STATE_DIR/registry.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  wait_for "registry" registry_up || die "registry did not answer on $REGISTRY_ADDR within ${WAIT_SECONDS}s; see $STATE_DIR/registry.log"
}

install_packages
install_emulation
install_browser
install_cosign
install_oras
register_binfmt
start_engine
start_registry
say "ok (state: $STATE_DIR)"
