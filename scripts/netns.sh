#!/usr/bin/env bash
# Test network namespace for Ember's media tests.
#
#   scripts/netns.sh up NAME          create namespace NAME (idempotent)
#   scripts/netns.sh down NAME        remove it and everything in it (idempotent)
#   scripts/netns.sh exec NAME CMD..  run CMD inside it, in the current folder and environment
#
# Janus gathers no ICE candidates on loopback, so WebRTC tests need a non-loopback address. The
# namespace holds a veth pair with BOTH ends inside it (10.77.0.1/24 and 10.77.0.2/24 by default) and
# `lo` up, and nothing else: no default route, no link to the host's network. Anything run inside can
# reach only loopback and those two addresses, which is all the tests may ever talk to.
#
# Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN) and iproute2. Override the addresses with
# EMBER_NETNS_IP_A / EMBER_NETNS_IP_B (CIDR form) if 10.77.0.0/24 clashes with something.
set -euo pipefail

IP_A="${EMBER_NETNS_IP_A:-10.77.0.1/24}"
IP_B="${EMBER_NETNS_IP_B:-10.77.0.2/24}"
# Interface names live inside the namespace only, so fixed names cannot clash with the host's.
VETH_A="ember0"
VETH_B="ember1"

usage() {
    echo "usage: $0 up NAME | down NAME | exec NAME CMD [ARGS...]" >&2
    exit 2
}

# Command output is captured before grep reads it: with pipefail, `cmd | grep -q` fails when grep
# exits at the first match and cmd then dies of SIGPIPE.
ns_exists() {
    local names
    names="$(ip netns list | awk '{print $1}')"
    grep -qx -- "$1" <<<"$names"
}

in_ns() {
    local name="$1"
    shift
    ip netns exec "$name" "$@"
}

ensure_addr() {
    local name="$1" dev="$2" cidr="$3"
    local addrs
    addrs="$(in_ns "$name" ip -o -4 addr show dev "$dev")"
    if ! grep -qw -- "inet ${cidr}" <<<"$addrs"; then
        in_ns "$name" ip addr add "$cidr" dev "$dev"
    fi
}

cmd_up() {
    local name="$1"
    ns_exists "$name" || ip netns add "$name"
    in_ns "$name" ip link set lo up
    if ! in_ns "$name" ip link show "$VETH_A" >/dev/null 2>&1; then
        # A half-created pair cannot exist (veth ends are created and deleted together), but a
        # stray end with the other name could: remove it so the add below cannot fail.
        in_ns "$name" ip link del "$VETH_B" >/dev/null 2>&1 || true
        in_ns "$name" ip link add "$VETH_A" type veth peer name "$VETH_B"
    fi
    ensure_addr "$name" "$VETH_A" "$IP_A"
    ensure_addr "$name" "$VETH_B" "$IP_B"
    in_ns "$name" ip link set "$VETH_A" up
    in_ns "$name" ip link set "$VETH_B" up
}

cmd_down() {
    local name="$1"
    # Deleting the namespace destroys the veth pair inside it.
    if ns_exists "$name"; then
        ip netns del "$name"
    fi
}

[[ $# -ge 2 ]] || usage
action="$1"
name="$2"
shift 2
[[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "bad namespace name: $name" >&2; exit 2; }

case "$action" in
    up) [[ $# -eq 0 ]] || usage; cmd_up "$name" ;;
    down) [[ $# -eq 0 ]] || usage; cmd_down "$name" ;;
    exec)
        [[ $# -ge 1 ]] || usage
        ns_exists "$name" || { echo "namespace $name does not exist: run '$0 up $name' first" >&2; exit 1; }
        exec ip netns exec "$name" "$@"
        ;;
    *) usage ;;
esac
