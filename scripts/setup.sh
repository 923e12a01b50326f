#!/usr/bin/env bash
# Shared set-up for scripts/run and scripts/test: Debian packages when missing, then a venv with Ember.
# Usage: source scripts/setup.sh [runtime|test]
set -euo pipefail

EMBER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EMBER_VENV="${EMBER_VENV:-$EMBER_ROOT/.venv}"

ember_apt_install() {
  # Install only what is missing; `apt-get update` first, as a fresh machine has no package lists.
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "ember: installing Debian packages: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ember_venv() {
  local extras="$1"
  if [ ! -x "$EMBER_VENV/bin/python" ]; then
    python3 -m venv "$EMBER_VENV"
  fi
  # Reinstall only when pyproject.toml changed since the last install.
  local stamp="$EMBER_VENV/.ember-installed-$extras"
  if [ ! -f "$stamp" ] || [ "$EMBER_ROOT/pyproject.toml" -nt "$stamp" ]; then
    "$EMBER_VENV/bin/pip" install -q --upgrade pip >/dev/null
    if [ "$extras" = "test" ]; then
      "$EMBER_VENV/bin/pip" install -q -e "$EMBER_ROOT[test]"
    else
      "$EMBER_VENV/bin/pip" install -q -e "$EMBER_ROOT"
    fi
    touch "$stamp"
  fi
}

ember_setup() {
  local what="${1:-runtime}"
  # janus: the SFU (media plane); coturn: the TURN relay (EMBER_TURN=embedded); ffmpeg: tools to inspect
  # recordings; iproute2: test network namespaces.
  local had_coturn=1
  dpkg -s coturn >/dev/null 2>&1 || had_coturn=0
  ember_apt_install janus coturn ffmpeg iproute2 python3-venv
  if [ "$had_coturn" = 0 ] && [ -d /run/systemd/system ]; then
    # Debian starts its own coturn service on install, on /etc/turnserver.conf and port 3478. Ember runs
    # its own relay on a generated config (EMBER_TURN=embedded): the system one, just installed, is off.
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo systemctl disable --now coturn >/dev/null 2>&1 || true
  fi
  if [ "$what" = "test" ]; then
    # chromium: the browser SDK's test drives headless Chromium with fake camera and microphone.
    ember_apt_install chromium
    # nginx + libnginx-mod-rtmp: a real RTMP server on loopback for the RTMP push tests
    # (tests/support/rtmp_server.py runs its own nginx from a temp folder; the system service is not used).
    ember_apt_install nginx libnginx-mod-rtmp
    # nftables: the TURN tests drop clients' direct media in their own network namespaces.
    ember_apt_install nftables
    # postgresql + redis-server: the API suite's database, the cluster's Redis, and the server binaries the
    # cluster harness (tests/support/cluster.py) starts in a namespace of its own.
    ember_apt_install postgresql redis-server
    # valgrind: bench/mixer.py --count instructions counts instructions with callgrind (and its test does).
    ember_apt_install valgrind
  fi
  ember_venv "$what"
}
