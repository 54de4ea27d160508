#!/usr/bin/env bash
# sudo ./sandbox.sh: rehearse a whole edge cluster on this machine (a real oned, emulated Scaleway,
# hosts and VMs as network namespaces, real nftables and FRR), print what happened and a pass/fail
# summary.
#
#   sudo ./sandbox.sh [--keep] [--speed F] [--hypervisor kvm|lxc] [--prefix P] [--no-build] [--cleanup]
#
# It installs the Debian packages it needs, builds OpenNebula from source (tests/oned/build.sh,
# cached) and our workspace (cargo build --release --locked), and runs the orchestrator
# (tests/sandbox): oned from a temporary ONE_LOCATION with our build installed by install.sh -d,
# then provision, networks, VMs, real packets, a poweroff, a live migration (KVM), teardown, and the
# check that nothing is left. Exit 0 only if every check passed.
#   --keep      leave the sandbox up after the checks, with commands to look around; Ctrl-C ends it
#   --speed F   emulator speed (1.0 = Scaleway's real delays; default 0.1)
#   --hypervisor lxc  LXC hosts (OpenNebula's LXC path; VMs are replaced, not moved); default kvm
#   --prefix P  namespace prefix (default sbx)
#   --no-build  use the binaries already in target/release
#   --cleanup   remove what a killed sandbox left, and exit
# Everything it creates (namespaces, processes, the temporary install) is removed when it ends,
# also on failure and on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")"

if [ "$(id -u)" != 0 ]; then
    echo "sandbox.sh needs root (network namespaces, nftables, FRR). Run: sudo ./sandbox.sh" >&2
    exit 1
fi

build=yes
args=()
for a in "$@"; do
    case "$a" in
        --no-build) build=no ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) args+=("$a") ;;
    esac
done

# iproute2, nftables: the namespaces and the drivers' tables; frr, frr-pythontools: FRR on every
# emulated host (zebra, bgpd, frr-reload.py); libxml2-utils: xmllint checks every VM document
# against OpenNebula's schema; the rest: the build.
packages=(build-essential pkg-config ca-certificates libxml2-utils iproute2 nftables frr frr-pythontools sudo)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export HOME="${HOME:-/root}"
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
target="${CARGO_TARGET_DIR:-target}/release"
if [ "$build" = yes ]; then
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo not found: install a Rust toolchain >= $(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml) (rustup)" >&2
        exit 1
    fi
    echo "==> cargo build --release --locked"
    cargo build --release --locked
fi

# OpenNebula itself: oned, its drivers and CLI, built from source once and cached outside the checkout
# (tests/oned/build.sh: about 7 minutes the first time; ONE_SCALEWAY_ONED names another build).
if [ -z "${ONE_SCALEWAY_ONED:-}" ]; then
    echo "==> tests/oned/build.sh (OpenNebula from source, cached)"
    ONE_SCALEWAY_ONED=$(tests/oned/build.sh | tail -n 1)
fi
export ONE_SCALEWAY_ONED

"$target/one-scaleway-sandbox" --bindir "$target" "${args[@]}"
