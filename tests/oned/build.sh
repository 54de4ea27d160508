#!/usr/bin/env bash
# tests/oned/build.sh: build a real OpenNebula (oned, its Ruby drivers and CLI) from source, for the
# end-to-end tests and the sandbox. Prints the path of the built installation (an ONE_LOCATION
# tree, read-only to the tests: each test run copies what it changes) as its last line.
#
#   tests/oned/build.sh [--deps-only]
#
# Source, in this order: $ONE_SCALEWAY_ONE_SOURCE (a release tarball or an unpacked tree), then
# ../shared/opennebula/one-release-7.0.0.tar.xz beside the checkout, then a shallow clone of the
# tag release-7.0.0 (needs the network). The build is cached outside the checkout, in
# $ONE_SCALEWAY_ONE_CACHE (default /var/cache/one-scaleway/opennebula), keyed by the source's
# sha256 (a tarball) or by the tree's git commit or file listing (a directory): a later run with the
# same source prints the cached path at once. Needs root (Debian packages, the oneadmin user).
# About 4-8 minutes on 2 cores when cold; ONE_SCALEWAY_ONE_JOBS sets scons' -j (default: cores).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cache=${ONE_SCALEWAY_ONE_CACHE:-/var/cache/one-scaleway/opennebula}
jobs=${ONE_SCALEWAY_ONE_JOBS:-$(nproc)}
deps_only=no
[ "${1:-}" = --deps-only ] && deps_only=yes

log() { printf 'build-oned: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (it installs Debian packages and creates the oneadmin user). Run: sudo $0"

# What OpenNebula's build and its Ruby drivers need (Debian 12 package names), and rsync, sudo
# and ssh that OpenNebula's tools call.
packages=(scons g++ bison flex pkg-config libxmlrpc-c++8-dev libxmlrpc-core-c3-dev libsqlite3-dev
    libssl-dev libxml2-dev libcurl4-openssl-dev zlib1g-dev ruby ruby-dev ruby-xmlrpc ruby-nokogiri
    ruby-sqlite3 ruby-ffi-rzmq ruby-treetop ruby-parse-cron sqlite3 rsync sudo openssh-client xz-utils)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The account OpenNebula runs as. Its home is OpenNebula's usual one; the tests give every oned
# they start a HOME of its own, so nothing is written there.
if ! getent passwd oneadmin >/dev/null; then
    log "creating the oneadmin user"
    useradd --system --user-group --home-dir /var/lib/one --no-create-home --shell /bin/bash oneadmin
fi
[ "$deps_only" = yes ] && exit 0

# ------------------------------------------------------------------------------ the source
source=${ONE_SCALEWAY_ONE_SOURCE:-}
if [ -z "$source" ] && [ -f "$top/../shared/opennebula/one-release-7.0.0.tar.xz" ]; then
    source=$(cd "$top/../shared/opennebula" && pwd)/one-release-7.0.0.tar.xz
fi
if [ -n "$source" ]; then
    [ -e "$source" ] || die "ONE_SCALEWAY_ONE_SOURCE=$source does not exist"
    if [ -d "$source" ]; then
        if git -C "$source" rev-parse HEAD >/dev/null 2>&1 && [ -z "$(git -C "$source" status --porcelain)" ]; then
            key=git-$(git -C "$source" rev-parse HEAD)
        else
            key=tree-$(cd "$source" && find . -path ./.git -prune -o -type f -printf '%P %s %T@\n' | sort | sha256sum | cut -c1-40)
        fi
    else
        key=$(sha256sum "$source" | cut -d' ' -f1)
    fi
else
    command -v git >/dev/null || die "no OpenNebula source: set ONE_SCALEWAY_ONE_SOURCE, or put one-release-7.0.0.tar.xz in ../shared/opennebula/, or install git"
    clone=$(mktemp -d)
    trap 'rm -rf "$clone"' EXIT
    log "cloning OpenNebula release-7.0.0"
    git clone -q --depth 1 --branch release-7.0.0 https://github.com/OpenNebula/one "$clone/one"
    source=$clone/one
    key=git-$(git -C "$source" rev-parse HEAD)
fi

out="$cache/$key"
if [ -f "$out/.complete" ]; then
    log "cached: $out (source $source)"
    echo "$out/install"
    exit 0
fi

# ------------------------------------------------------------------------------ the build
log "building OpenNebula from $source into $out (-j$jobs; 4-8 minutes on 2 cores)"
rm -rf "$out"
mkdir -p "$out"
started=$(date +%s)
if [ -d "$source" ]; then
    cp -a "$source" "$out/src"
else
    mkdir "$out/src"
    tar -xJf "$source" -C "$out/src" --strip-components=1
fi
cd "$out/src"
options=(mysql=no sqlite=yes systemd=no svncterm=no fireedge=no rubygems=no context=no download=no new_xmlrpc=yes)
# 7.4 builds its gRPC API unless told not to (gRPC and protobuf are not in Debian 12's set).
grep -q "'grpc'" SConstruct && options+=(grpc=no)
scons -j"$jobs" "${options[@]}" > "$out/build.log" 2>&1 || { tail -40 "$out/build.log" >&2; die "scons failed: $out/build.log"; }

# OpenNebula's own installer, self-contained in install/ (it warns about parts not built:
# FireEdge, the Prometheus exporters, man pages).
./install.sh -d "$out/install" -u oneadmin -g oneadmin > "$out/install.log" 2>&1 || { tail -40 "$out/install.log" >&2; die "OpenNebula's install.sh failed: $out/install.log"; }

# Ruby: load_opennebula_paths.rb points RubyGems at ONE_LOCATION/share/gems only, which hides
# Debian's gems (rexml, ffi, nokogiri): keep Debian's paths after ours.
paths="$out/install/lib/ruby/load_opennebula_paths.rb"
mkdir -p "$out/install/share/gems"
grep -q 'Gem.use_paths(File.realpath(GEMS_LOCATION))$' "$paths" || die "$paths has changed: the RubyGems fix no longer applies"
sed -i 's|Gem.use_paths(File.realpath(GEMS_LOCATION))$|Gem.use_paths(File.realpath(GEMS_LOCATION), [File.realpath(GEMS_LOCATION)] + Gem.default_path)|' "$paths"

# The build tree is not needed any more (the installation is self-contained): keep the logs.
rm -rf "$out/src"
chmod -R a+rX "$out"
echo "$key $(date -u +%FT%TZ) $(( $(date +%s) - started ))s" > "$out/.complete"
log "built in $(( $(date +%s) - started )) s: $out/install"
echo "$out/install"
