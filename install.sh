#!/usr/bin/env bash
# install.sh: install one-scaleway's drivers on an OpenNebula frontend.
#
#   sudo ./install.sh                 system-wide, OpenNebula's paths, owned by oneadmin
#   sudo ./install.sh -d DIR          self-contained, in DIR (OpenNebula's ONE_LOCATION layout)
#   sudo ./install.sh -r [-d DIR]     uninstall exactly what a previous install installed
#
# Options: -u USER / -g GROUP (the account the drivers run as, default oneadmin), -b BINDIR (take
# the three binaries from BINDIR instead of building them with cargo), --no-config (print the
# oned.conf and vmm_execrc changes instead of making them), -h.
#
# Ownership: everything installed is root's (root:root, not writable by the drivers' account),
# but the two things that account must write: the drivers' state folder (/var/lib/one/scaleway)
# and its Scaleway credentials file.
#
# What it installs (system-wide paths; with -d DIR: DIR/var/remotes, DIR/bin, DIR/etc, DIR/share):
#   /var/lib/one/remotes/ipam/scaleway_fip/      scaleway-ipam and its action files
#   /var/lib/one/remotes/vnm/scaleway/           scaleway-vnm and its action files (public)
#   /var/lib/one/remotes/vnm/scaleway_evpn/      scaleway-vnm and its action files (private)
#   /usr/bin/scaleway-provision            (the test emulator, scaleway-emulator, is never installed)
#   /usr/share/one/scaleway/                     documentation, provider and provision templates,
#                                                files for the hosts (host/)
#   ~oneadmin/.config/scw/config.yaml            a credentials template (0600), if there is none
# and registers the drivers in oned.conf and vmm_execrc (a backup is kept beside each file).
# Every installed file is listed, with its checksum, in the manifest
# (/usr/share/one/scaleway/install-manifest, root's), which -r follows (only for paths in the
# folders and files listed above). Re-running is safe; a file the
# administrator edited is never overwritten: the new one is installed beside it as FILE.new.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir=""
owner=oneadmin
group=oneadmin
bindir=""
uninstall=no
config=yes

usage() { sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        -d) dir=${2:?-d needs a directory}; shift 2 ;;
        -u) owner=${2:?-u needs a user}; shift 2 ;;
        -g) group=${2:?-g needs a group}; shift 2 ;;
        -b) bindir=${2:?-b needs a directory}; shift 2 ;;
        -r) uninstall=yes; shift ;;
        --no-config) config=no; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option $1 (see -h)" ;;
    esac
done

if [ -n "$dir" ]; then
    case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
    remotes="$dir/var/remotes"; bin="$dir/bin"; etc="$dir/etc"; share="$dir/share/scaleway"
    state="$dir/var/scaleway"; home="$dir/var"
else
    remotes=/var/lib/one/remotes; bin=/usr/bin; etc=/etc/one; share=/usr/share/one/scaleway
    state=/var/lib/one/scaleway; home=$(getent passwd "$owner" | cut -d: -f6 || true)
    [ -n "$home" ] || die "user $owner does not exist (is OpenNebula installed? use -u, or -d DIR)"
fi
manifest="$share/install-manifest"
dirs_list="$share/install-dirs"
# Before 2026-12: the manifest was in the drivers' state folder, which their account can write;
# it is only read from there to be moved, and every path in it is checked like any other.
old_manifest="$state/install-manifest"
old_dirs_list="$state/install-dirs"
scw="$home/.config/scw/config.yaml"

# ours PATH: whether PATH is one of the files this script installs (a manifest entry naming
# anything else is ignored, wherever the manifest comes from); bin/scaleway-emulator: installed by
# earlier versions, removed by -r.
ours() {
    case "$1" in
        *..*) return 1 ;;
        "$remotes/ipam/scaleway_fip/"*|"$remotes/vnm/scaleway/"*|"$remotes/vnm/scaleway_evpn/"*) return 0 ;;
        "$bin/scaleway-provision"|"$bin/scaleway-emulator"|"$share/"*|"$scw"|"$scw.new") return 0 ;;
        *) return 1 ;;
    esac
}

oned_conf="$etc/oned.conf"
vmm_execrc="$etc/vmm_exec/vmm_execrc"

# ---------------------------------------------------------------------------------- uninstall
if [ "$uninstall" = yes ]; then
    if [ ! -f "$manifest" ] && [ -f "$old_manifest" ]; then manifest=$old_manifest; dirs_list=$old_dirs_list; fi
    [ -f "$manifest" ] || die "no install manifest at $manifest: nothing of ours is installed there"
    if [ "$config" = yes ] && [ -f "$oned_conf" ] && [ -f "$vmm_execrc" ] && [ -x "$bin/scaleway-provision" ]; then
        "$bin/scaleway-provision" opennebula-config --oned-conf "$oned_conf" --vmm-execrc "$vmm_execrc" --write --remove
    fi
    # Files first (unless edited since), then links, then the folders we made (if empty).
    entries=$(cat "$manifest"); made=$(tac "$dirs_list" 2>/dev/null || true)
    rm -f "$manifest" "$dirs_list" "$old_manifest" "$old_dirs_list"
    while read -r kind sum path; do
        [ -n "$kind" ] || continue
        if ! ours "$path"; then echo "ignored $path: not a file this script installs"; continue; fi
        case "$kind" in
            file)
                [ -f "$path" ] && [ ! -L "$path" ] || continue
                if [ "$(sha256sum "$path" | cut -d' ' -f1)" = "$sum" ]; then rm -f "$path"
                else echo "kept $path: it was edited after installation"; fi ;;
            link) [ -L "$path" ] && rm -f "$path" ;;
        esac
    done <<< "$entries"
    while read -r d; do [ -n "$d" ] && rmdir "$d" 2>/dev/null || true; done <<< "$made"
    rmdir "$state" 2>/dev/null || true
    echo "one-scaleway uninstalled. Restart OpenNebula (systemctl restart opennebula) and run: onehost sync --force"
    exit 0
fi

# ---------------------------------------------------------------------------------- binaries
if [ -z "$bindir" ]; then
    command -v cargo >/dev/null || die "cargo not found: install Rust, or pass prebuilt binaries with -b DIR"
    (cd "$here" && cargo build --release --locked)
    bindir="$here/target/release"
fi
for b in scaleway-ipam scaleway-vnm scaleway-provision; do
    [ -x "$bindir/$b" ] || die "$bindir/$b is missing (build with cargo build --release, or fix -b)"
done

new_manifest=$(mktemp)
new_dirs=$(mktemp)
trap 'rm -f "$new_manifest" "$new_dirs"' EXIT

# mkdirs USER GROUP DIR...: creates the missing folders (and parents), owned by USER:GROUP.
mkdirs() {
    local u=$1 g=$2 d; shift 2
    for d in "$@"; do
        if [ ! -d "$d" ]; then
            # record every folder we create, parents first
            local missing=() p="$d"
            while [ ! -d "$p" ]; do missing=("$p" "${missing[@]}"); p=$(dirname "$p"); done
            install -d -o "$u" -g "$g" -m 0755 "${missing[@]}"
            printf '%s\n' "${missing[@]}" >> "$new_dirs"
        fi
    done
}

# put SRC DEST MODE [config [USER GROUP]]: installs SRC as DEST, root's unless USER GROUP are
# given; a config file edited by the administrator (not what we installed last time) is kept,
# and the new one goes beside it as DEST.new.
put() {
    local src=$1 dest=$2 mode=$3 kind=${4:-} u=${5:-root} g=${6:-root}
    local sum; sum=$(sha256sum "$src" | cut -d' ' -f1)
    if [ "$kind" = config ] && [ -e "$dest" ]; then
        local now old; now=$(sha256sum "$dest" | cut -d' ' -f1)
        old=$(awk -v p="$dest" '$1 == "file" && $3 == p { print $2 }' "$manifest" 2>/dev/null || true)
        if [ "$now" != "$sum" ] && [ "$now" != "$old" ]; then
            install -o "$u" -g "$g" -m "$mode" "$src" "$dest.new"
            echo "kept $dest (edited by you); the new version is $dest.new"
            echo "file $old $dest" >> "$new_manifest"
            echo "file $sum $dest.new" >> "$new_manifest"
            return
        fi
    fi
    install -o "$u" -g "$g" -m "$mode" "$src" "$dest"
    echo "file $sum $dest" >> "$new_manifest"
}

mkdirs "$owner" "$group" "$state"
mkdirs root root "$remotes/ipam/scaleway_fip" "$remotes/vnm/scaleway" "$remotes/vnm/scaleway_evpn" "$bin" \
    "$share/doc" "$share/providers" "$share/provisions" "$share/host"
# Our own folders are root's, also when an earlier install made them the drivers' account's.
chown root:root "$remotes/ipam/scaleway_fip" "$remotes/vnm/scaleway" "$remotes/vnm/scaleway_evpn" \
    "$share" "$share/doc" "$share/providers" "$share/provisions" "$share/host"

# Action files are two-line wrappers, not links: `onehost sync` copies the remotes with rsync -L,
# which would turn every link into a full copy of the binary on every host.
# action FILE PROGRAM WORDS...: FILE runs PROGRAM (beside it) with WORDS, then OpenNebula's arguments.
action() {
    local file=$1 program=$2; shift 2
    local tmp; tmp=$(mktemp)
    printf '#!/bin/sh\n# one-scaleway: an action file OpenNebula runs; the driver is the binary beside it.\nexec "${0%%/*}/%s" %s -- "$@"\n' \
        "$program" "$*" > "$tmp"
    put "$tmp" "$file" 0755
    rm -f "$tmp"
}

put "$bindir/scaleway-ipam" "$remotes/ipam/scaleway_fip/scaleway-ipam" 0755
for a in register_address_range unregister_address_range get_address allocate_address free_address; do
    action "$remotes/ipam/scaleway_fip/$a" scaleway-ipam "$a"
done
for driver in scaleway scaleway_evpn; do
    put "$bindir/scaleway-vnm" "$remotes/vnm/$driver/scaleway-vnm" 0755
    for a in pre post clean update_sg update_nic vnet_create vnet_delete; do
        action "$remotes/vnm/$driver/$a" scaleway-vnm --driver "$driver" "$a"
    done
done
action "$remotes/vnm/scaleway/clean_host" scaleway-vnm --driver scaleway clean_host
put "$bindir/scaleway-provision" "$bin/scaleway-provision" 0755
put "$here/share/doc/protocol.md" "$share/doc/protocol.md" 0644
put "$here/README.md" "$share/doc/README.md" 0644
for f in "$here"/share/scaleway/providers/*.yaml; do put "$f" "$share/providers/$(basename "$f")" 0644 config; done
for f in "$here"/share/scaleway/provisions/*.yaml; do put "$f" "$share/provisions/$(basename "$f")" 0644 config; done
for f in "$here"/share/host/*; do put "$f" "$share/host/$(basename "$f")" 0644; done

# The credentials file of the user the drivers run as: a template, 0600, theirs, never overwritten.
if [ ! -e "$scw" ]; then
    mkdirs "$owner" "$group" "$home/.config/scw"
    put "$here/etc/scw-config.yaml" "$scw" 0600 config "$owner" "$group"
    echo "edit $scw: put the Scaleway secret key, project and zone the drivers should use"
fi

# Merge the manifests: keep earlier entries for paths this run did not install (only paths
# this script installs: an old manifest was writable by the drivers' account).
previous=$manifest
[ -f "$previous" ] || previous=$old_manifest
if [ -f "$previous" ]; then
    while read -r kind sum path; do
        ours "$path" && echo "$kind $sum $path"
    done < "$previous" | awk 'NR == FNR { seen[$3] = 1; next } !($3 in seen)' "$new_manifest" - >> "$new_manifest"
fi
sort -u -k3,3 "$new_manifest" | install -o root -g root -m 0644 /dev/stdin "$manifest"
if [ -f "$old_dirs_list" ]; then
    grep -x -F -e "$state" -e "$remotes/ipam/scaleway_fip" -e "$remotes/vnm/scaleway" -e "$remotes/vnm/scaleway_evpn" \
        -e "$share" -e "$share/doc" -e "$share/providers" -e "$share/provisions" -e "$share/host" \
        -e "$home/.config" -e "$home/.config/scw" "$old_dirs_list" >> "$new_dirs" || true
fi
if [ -s "$new_dirs" ]; then
    cat "$new_dirs" >> "$dirs_list"
    chown root:root "$dirs_list"
fi
rm -f "$old_manifest" "$old_dirs_list"

# ---------------------------------------------------------------------------------- oned.conf
if [ -f "$oned_conf" ] && [ -f "$vmm_execrc" ]; then
    if [ "$config" = yes ]; then
        "$bin/scaleway-provision" opennebula-config --oned-conf "$oned_conf" --vmm-execrc "$vmm_execrc" --write
    else
        echo "--no-config: these are the changes to make by hand:"
        "$bin/scaleway-provision" opennebula-config --oned-conf "$oned_conf" --vmm-execrc "$vmm_execrc"
    fi
else
    echo "no $oned_conf or $vmm_execrc here: register the drivers later with"
    echo "  $bin/scaleway-provision opennebula-config --oned-conf <oned.conf> --vmm-execrc <vmm_execrc> --write"
fi

echo "one-scaleway installed. Restart OpenNebula (systemctl restart opennebula), then run: onehost sync --force"
