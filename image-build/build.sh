#!/usr/bin/env bash
# Build the Coldstation cold-station image: Debian bookworm (debootstrap) with the
# appliance installed from hash-pinned wheels, no networking at all, a read-only squashfs
# root with an overlay in tmpfs (live-boot), auto-login into coldstation-appliance, and a
# boot self-check. See docs/image.md.
#
# Usage: sudo image-build/build.sh            (as root: debootstrap, chroot, mounts)
#
# Outputs in $COLDSTATION_IMAGE_OUT (default image-build/out):
#   coldstation.img        bootable raw disk image (BIOS: SYSLINUX; UEFI: systemd-boot)
#   filesystem.squashfs    the read-only root filesystem (also inside the image)
#   rootfs.tar.zst         the root filesystem as a normalised tarball (zstd)
#   vmlinuz, initrd.img    kernel and initramfs (also inside the image)
#   manifest.json          packages and versions, wheels, removed modules, every file's
#                          hash, and the hashes of all of the above
#   SHA256SUMS             the artifacts' hashes, for sha256sum -c
#   build.log, timings.txt
#
# Environment:
#   SOURCE_DATE_EPOCH           timestamps (default: the commit time of HEAD)
#   COLDSTATION_IMAGE_OUT       output directory (its work/ subdirectory is scratch)
#   COLDSTATION_IMAGE_CACHE     download cache: debootstrap and apt .debs, wheels
#                               (default image-build/cache)
#   COLDSTATION_IMAGE_SOURCE    head (default): the appliance is built from `git archive
#                               HEAD`, what an auditor can rebuild; worktree: from the
#                               working tree (tracked and untracked, not ignored, files)
#   COLDSTATION_MIRROR          Debian mirror (default http://deb.debian.org/debian); for a
#                               rebuild later use a snapshot, e.g.
#                               http://snapshot.debian.org/archive/debian/20250101T000000Z
#   COLDSTATION_SECURITY_MIRROR security mirror (default http://deb.debian.org/debian-security;
#                               "none" leaves bookworm-security out)
#   COLDSTATION_SQUASHFS_COMP   squashfs compression (default "zstd -Xcompression-level 15")
#   COLDSTATION_IMAGE_KEEP_ROOT 1: keep the unpacked root in work/rootfs after the build
set -euo pipefail
umask 022
export LC_ALL=C.UTF-8 TZ=UTC

# Run from a snapshot of image-build/ (this script, its configuration, the files of the
# image), so that editing the checkout cannot change a build under way.
if [ -z "${COLDSTATION_BUILD_HERE:-}" ]; then
    origin=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    snapshot=$(mktemp -d "${TMPDIR:-/tmp}/coldstation-build.XXXXXX")
    tar -C "$origin" --exclude=./out --exclude=./cache -cf - . | tar -C "$snapshot" -xf -
    COLDSTATION_BUILD_HERE=$snapshot COLDSTATION_BUILD_ORIGIN=$origin \
        exec bash "$snapshot/build.sh" "$@"
fi
HERE=$COLDSTATION_BUILD_HERE          # the snapshot
ORIGIN=$COLDSTATION_BUILD_ORIGIN      # image-build/ in the checkout
REPO=$(dirname "$ORIGIN")
OUT=$(mkdir -p "${COLDSTATION_IMAGE_OUT:-$ORIGIN/out}" && cd "${COLDSTATION_IMAGE_OUT:-$ORIGIN/out}" && pwd)
CACHE=$(mkdir -p "${COLDSTATION_IMAGE_CACHE:-$ORIGIN/cache}" && cd "${COLDSTATION_IMAGE_CACHE:-$ORIGIN/cache}" && pwd)
WORK=$OUT/work
ROOT=$WORK/rootfs
SUITE=bookworm
MIRROR=${COLDSTATION_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${COLDSTATION_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SOURCE_MODE=${COLDSTATION_IMAGE_SOURCE:-head}
SQUASHFS_COMP=${COLDSTATION_SQUASHFS_COMP:-zstd -Xcompression-level 15}
PYTHON=${COLDSTATION_IMAGE_PYTHON:-python3}
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$REPO" log -1 --format=%ct)
fi
export SOURCE_DATE_EPOCH
SDE=$SOURCE_DATE_EPOCH
LABEL_BOOT=COLDBOOT
VOLUME_ID=C01D5747
APPLIANCE_USER=coldstation

# -- logging and timing -------------------------------------------------------------------
mkdir -p "$WORK"
exec > >(tee "$OUT/build.log") 2>&1
: > "$OUT/timings.txt"
BUILD_START=$(date +%s)
STEP=""
STEP_START=$BUILD_START
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
step_done() {
    if [ -n "$STEP" ]; then
        printf '%-28s %5ss\n' "$STEP" "$(( $(date +%s) - STEP_START ))" >> "$OUT/timings.txt"
    fi
}
step() { step_done; STEP=$1; STEP_START=$(date +%s); log "== $1"; }
die() { log "ERROR: $*"; exit 1; }

# -- preflight ------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and mounts need it)"
for tool in debootstrap mksquashfs mkfs.fat mcopy mmd sfdisk tar zstd sha256sum git "$PYTHON"; do
    command -v "$tool" >/dev/null || die "missing host tool: $tool (apt-get install debootstrap squashfs-tools dosfstools mtools fdisk zstd git python3)"
done
exec 9> "$CACHE/.lock"
flock 9 || die "cannot lock the cache $CACHE"

MOUNTS=()
cleanup() {
    local i
    for (( i=${#MOUNTS[@]}-1; i>=0; i-- )); do
        umount -l "${MOUNTS[$i]}" 2>/dev/null || true
    done
    MOUNTS=()
}
trap 'cleanup; rm -rf "$HERE"' EXIT   # the snapshot of image-build/
bind() { mkdir -p "$2"; mount --bind "$1" "$2"; MOUNTS+=("$2"); }
in_root() {
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LC_ALL=C.UTF-8 TZ=UTC DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true \
        SOURCE_DATE_EPOCH="$SDE" PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1 "$@"
}
list() { sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$1"; }

log "Coldstation image build: SOURCE_DATE_EPOCH=$SDE source=$SOURCE_MODE out=$OUT cache=$CACHE"

# -- 1. the appliance and its dependencies as wheels (on the host) --------------------------
step wheels
BUILDENV=$CACHE/buildenv
if [ ! -x "$BUILDENV/bin/pip" ]; then
    "$PYTHON" -m venv "$BUILDENV"
fi
"$BUILDENV/bin/pip" install -q --disable-pip-version-check --require-hashes \
    -r "$HERE/build-requirements.lock"
WHEELS=$CACHE/wheels
"$BUILDENV/bin/python" "$HERE/lib/wheels.py" download "$HERE/requirements.lock" "$WHEELS" "$BUILDENV/bin/pip"
"$BUILDENV/bin/python" "$HERE/lib/wheels.py" download "$HERE/build-requirements.lock" "$WHEELS" "$BUILDENV/bin/pip"
SRC=$WORK/src
rm -rf "$SRC" "$WORK/wheelhouse"
mkdir -p "$SRC" "$WORK/wheelhouse"
if [ "$SOURCE_MODE" = head ]; then
    GIT_COMMIT=$(git -C "$REPO" rev-parse HEAD)
    git -C "$REPO" archive --format=tar HEAD | tar -x -C "$SRC"
elif [ "$SOURCE_MODE" = worktree ]; then
    GIT_COMMIT="$(git -C "$REPO" rev-parse HEAD)+worktree"
    (cd "$REPO" && git ls-files -z -c -o --exclude-standard | tar --null -T - -c) | tar -x -C "$SRC"
else
    die "COLDSTATION_IMAGE_SOURCE must be head or worktree"
fi
find "$SRC" -exec touch -h -d "@$SDE" {} +
chmod -R u=rwX,go=rX "$SRC"
(cd "$SRC" && "$BUILDENV/bin/pip" wheel -q --no-deps --no-build-isolation \
    --disable-pip-version-check -w "$WORK/wheelhouse" .)
rm -rf "$SRC/build" "$SRC"/*.egg-info
APP_WHEEL=$(ls "$WORK/wheelhouse"/coldstation-*.whl)
while read -r name; do
    cp "$("$BUILDENV/bin/python" "$HERE/lib/wheels.py" wheel-of "$HERE/requirements.lock" "$WHEELS" "$name")" "$WORK/wheelhouse/"
done < <(sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/\1/p' "$HERE/requirements.lock")
PIP_WHEEL=$("$BUILDENV/bin/python" "$HERE/lib/wheels.py" wheel-of "$HERE/build-requirements.lock" "$WHEELS" pip)
cp "$PIP_WHEEL" "$WORK/wheelhouse/"
"$BUILDENV/bin/python" "$HERE/lib/wheels.py" requirements "$HERE/requirements.lock" "$APP_WHEEL" "$WORK/wheelhouse/requirements.txt"
log "appliance wheel $(basename "$APP_WHEEL") sha256 $(sha256sum "$APP_WHEEL" | cut -d' ' -f1)"

# -- 2. debootstrap -------------------------------------------------------------------------
step debootstrap
rm -rf "$ROOT"
mkdir -p "$CACHE/debootstrap" "$CACHE/apt/archives/partial" "$CACHE/apt/lists/partial"
debootstrap --variant=minbase --cache-dir="$CACHE/debootstrap" "$SUITE" "$ROOT" "$MIRROR"

# -- 3. packages ------------------------------------------------------------------------------
step packages
bind /proc "$ROOT/proc"
bind /sys "$ROOT/sys"
bind /dev "$ROOT/dev"
bind "$CACHE/apt/archives" "$ROOT/var/cache/apt/archives"
bind "$CACHE/apt/lists" "$ROOT/var/lib/apt/lists"
{
    echo "deb $MIRROR $SUITE main"
    echo "deb $MIRROR $SUITE-updates main"
    [ "$SECURITY_MIRROR" = none ] || echo "deb $SECURITY_MIRROR $SUITE-security main"
} > "$ROOT/etc/apt/sources.list"
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"   # start no services
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
# No documentation, man pages or translations in the image.
cat > "$ROOT/etc/dpkg/dpkg.cfg.d/coldstation-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
EOF
echo 'Acquire::Languages "none";' > "$ROOT/etc/apt/apt.conf.d/90coldstation"
# One initramfs, built once the modules are gone (step 7), not at every kernel trigger.
in_root dpkg-divert --local --rename --add /usr/sbin/update-initramfs >/dev/null
ln -sf /bin/true "$ROOT/usr/sbin/update-initramfs"
in_root apt-get update -q
in_root apt-get -y -q dist-upgrade
# shellcheck disable=SC2046
in_root apt-get install -y -q --no-install-recommends $(list "$HERE/config/packages.txt")
# Boot loaders for the boot medium, kept out of the root filesystem.
BOOTPKG=$WORK/bootpkgs
rm -rf "$BOOTPKG" && mkdir -p "$BOOTPKG/debs"
in_root sh -c 'cd /tmp && apt-get download -q syslinux syslinux-common systemd-boot-efi'
mv "$ROOT"/tmp/*.deb "$BOOTPKG/debs/"
for deb in "$BOOTPKG"/debs/*.deb; do dpkg-deb -x "$deb" "$BOOTPKG/root"; done

# -- 4. the appliance -----------------------------------------------------------------------
step appliance
rm -rf "$ROOT/tmp/wheelhouse" && cp -r "$WORK/wheelhouse" "$ROOT/tmp/wheelhouse"
in_root python3 -m venv --without-pip /opt/coldstation
in_root /opt/coldstation/bin/python "/tmp/wheelhouse/$(basename "$PIP_WHEEL")/pip" install \
    --no-index --find-links /tmp/wheelhouse --require-hashes --no-compile \
    --disable-pip-version-check --no-cache-dir --root-user-action=ignore \
    -r /tmp/wheelhouse/requirements.txt
rm -rf "$ROOT/tmp/wheelhouse"
for exe in coldstation-appliance coldstation-audit; do
    ln -sf "/opt/coldstation/bin/$exe" "$ROOT/usr/local/bin/$exe"
done
# The appliance does not need the coordinator's console script on the station.
rm -f "$ROOT/opt/coldstation/bin/coldstation-coordinator"

# -- 5. configuration -------------------------------------------------------------------------
step configure
# Files of the image (owner root; scripts in usr/lib/coldstation executable).
(cd "$HERE/rootfs" && find . -type d -not -name __pycache__) | while read -r d; do mkdir -p "$ROOT/$d"; done
(cd "$HERE/rootfs" && find . -type f -not -path '*/__pycache__/*') | sort | while read -r f; do
    install -m 0644 -o root -g root "$HERE/rootfs/$f" "$ROOT/$f"
done
chmod 0755 "$ROOT"/usr/lib/coldstation/* "$ROOT/etc/initramfs-tools/hooks/coldstation-airgap"
# -D: git keeps no empty folder, so nothing in rootfs/ makes etc/coldstation (issue 18)
install -D -m 0644 "$HERE/config/selfcheck.conf" "$ROOT/etc/coldstation/selfcheck.conf"
install -D -m 0644 "$HERE/config/appliance.conf" "$ROOT/etc/coldstation/appliance.conf"
echo coldstation > "$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost coldstation\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$ROOT/etc/hosts"
rm -f "$ROOT/etc/resolv.conf"   # debootstrap copies the build host's
# The appliance's user: logged in automatically, its shell is the session script.
in_root useradd --create-home --uid 1000 --user-group --groups video,plugdev \
    --shell /usr/lib/coldstation/session --comment "Coldstation appliance" "$APPLIANCE_USER"
touch "$ROOT/home/$APPLIANCE_USER/.hushlogin"   # no motd, no "last login"
: > "$ROOT/etc/motd"
printf 'Coldstation cold station \\l\n\n' > "$ROOT/etc/issue"
in_root passwd --lock root >/dev/null
in_root passwd --lock "$APPLIANCE_USER" >/dev/null
echo /usr/lib/coldstation/session >> "$ROOT/etc/shells"
# systemd: the self-check before the consoles, hot-plug re-checks, nothing networked.
in_root systemctl enable coldstation-selfcheck.service coldstation-poweroff.path
in_root systemctl enable getty@tty1.service
for unit in systemd-networkd.service systemd-networkd.socket systemd-networkd-wait-online.service \
            systemd-network-generator.service systemd-firstboot.service \
            systemd-logind.service getty-static.service remote-fs.target remote-fs-pre.target \
            apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
            fstrim.timer systemd-pstore.service; do
    in_root systemctl mask "$unit" >/dev/null 2>&1 || true
done
in_root systemctl set-default multi-user.target
# Journal in memory only (the root is read-only; the appliance has its own journal).
mkdir -p "$ROOT/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nForwardToConsole=no\n' > "$ROOT/etc/systemd/journald.conf.d/coldstation.conf"

# -- 6. no networking in the kernel ---------------------------------------------------------
step kernel-modules
KVER=$(ls "$ROOT/lib/modules")
[ "$(echo "$KVER" | wc -l)" = 1 ] || die "expected one kernel, found: $KVER"
"$PYTHON" "$HERE/lib/kmods.py" "$ROOT/lib/modules/$KVER" "$HERE/config/remove-modules.txt" \
    "$ROOT/usr/share/coldstation/removed-modules.txt" "$ROOT/etc/modprobe.d/coldstation-airgap.conf"
in_root depmod -a "$KVER"
if find "$ROOT/lib/modules/$KVER" -path '*/kernel/net/*' -o -path '*/drivers/net/*' | grep -q .; then
    die "networking modules remain in /lib/modules/$KVER"
fi
log "removed $(wc -l < "$ROOT/usr/share/coldstation/removed-modules.txt") kernel modules"

# -- 7. initramfs (live-boot: squashfs read-only + overlay in tmpfs) ------------------------
step initramfs
rm -f "$ROOT/usr/sbin/update-initramfs" "$ROOT"/boot/initrd.img-*
in_root dpkg-divert --local --rename --remove /usr/sbin/update-initramfs >/dev/null
in_root update-initramfs -c -k "$KVER"
cp "$ROOT/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
cp "$ROOT/boot/initrd.img-$KVER" "$WORK/initrd.img"
rm -f "$ROOT/boot/initrd.img-$KVER" "$ROOT/initrd.img" "$ROOT/initrd.img.old" "$ROOT/vmlinuz.old"

# -- 8. no package manager, no caches, no host traces -------------------------------------
step cleanup
cleanup   # unmount proc, sys, dev and the apt caches
in_root dpkg --purge --force-remove-protected apt libapt-pkg6.0 debian-archive-keyring gpgv \
    >/dev/null
rm -f "$ROOT/etc/dpkg/dpkg.cfg.d/coldstation-nodoc"
in_root dpkg-query -W -f='${Package}\t${Version}\t${Architecture}\n' | LC_ALL=C sort > "$WORK/packages.tsv"
cp "$WORK/packages.tsv" "$ROOT/usr/share/coldstation/packages.tsv"
cp "$WORK/wheelhouse/requirements.txt" "$ROOT/usr/share/coldstation/requirements.txt"
forbidden=$(cut -f1 "$WORK/packages.tsv" | grep -Fxf <(list "$HERE/config/forbidden-packages.txt") || true)
[ -z "$forbidden" ] || die "forbidden packages installed: $forbidden"
# Bytecode: one deterministic form everywhere (hash-based, not timestamps).
in_root python3 -m compileall -q -f --invalidation-mode unchecked-hash \
    /usr/lib/python3.11 /usr/lib/python3/dist-packages /opt/coldstation/lib >/dev/null || true
rm -f "$ROOT/usr/sbin/policy-rc.d"
rm -rf "$ROOT/etc/apt" "$ROOT/var/lib/apt" "$ROOT/var/cache/apt" "$ROOT/var/log"/* \
       "$ROOT/var/cache/debconf"/*-old "$ROOT/var/lib/dpkg"/*-old "$ROOT/etc"/*- \
       "$ROOT/var/cache/ldconfig/aux-cache" "$ROOT/var/lib/systemd/random-seed" \
       "$ROOT/var/lib/systemd/catalog/database" "$ROOT/var/lib/dbus/machine-id" \
       "$ROOT/root/.cache" "$ROOT/root/.bash_history" "$ROOT/tmp"/* "$ROOT/var/tmp"/* \
       "$ROOT/var/lib/initramfs-tools" "$ROOT/var/cache/man" "$ROOT/etc/ssh" \
       "$ROOT/var/lib/dhcp" "$ROOT/etc/network"
find "$ROOT" -xdev \( -name '*.dpkg-old' -o -name '*.dpkg-dist' -o -name '*.dpkg-new' \) -delete
: > "$ROOT/etc/machine-id"             # systemd makes a new one in memory at each boot
in_root ldconfig                        # ld.so.cache with no stale entries
rm -f "$ROOT/var/cache/ldconfig/aux-cache"   # ldconfig's own cache: inode numbers, times
"$PYTHON" "$HERE/lib/manifest.py" normalise "$ROOT"   # shadow change dates etc.
# Nothing needs updating at boot (systemd's ConditionNeedsUpdate compares these mtimes).
touch "$ROOT/etc/.updated" "$ROOT/var/.updated"
find "$ROOT" -xdev -exec touch -h -d "@$SDE" {} +

# -- 9. root filesystem: tarball and squashfs ----------------------------------------------
step rootfs-tar
rm -f "$OUT/rootfs.tar.zst"
tar --create --file="$WORK/rootfs.tar" --directory="$ROOT" --format=posix --sort=name \
    --numeric-owner --mtime="@$SDE" --no-xattrs --no-acls --no-selinux \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime .
ROOTFS_SHA=$(sha256sum "$WORK/rootfs.tar" | cut -d' ' -f1)
zstd -q -T2 -10 --rm "$WORK/rootfs.tar" -o "$OUT/rootfs.tar.zst"
log "rootfs.tar sha256 $ROOTFS_SHA"
step squashfs
rm -f "$OUT/filesystem.squashfs"
# shellcheck disable=SC2086
env -u SOURCE_DATE_EPOCH mksquashfs "$ROOT" "$OUT/filesystem.squashfs" -noappend -quiet \
    -no-progress -comp $SQUASHFS_COMP -all-time "$SDE" -mkfs-time "$SDE" -no-xattrs \
    -processors 2
log "filesystem.squashfs sha256 $(sha256sum "$OUT/filesystem.squashfs" | cut -d' ' -f1)"

# -- 10. boot medium: MBR + one FAT partition (SYSLINUX for BIOS, systemd-boot for UEFI) ----
step disk-image
mv "$WORK/vmlinuz" "$WORK/initrd.img" "$OUT/"
"$PYTHON" "$HERE/lib/mkdisk.py" --out "$OUT/coldstation.img" --work "$WORK/boot" \
    --bootpkg "$BOOTPKG/root" --config "$HERE/boot" --kernel "$OUT/vmlinuz" \
    --initrd "$OUT/initrd.img" --squashfs "$OUT/filesystem.squashfs" \
    --label "$LABEL_BOOT" --volume-id "$VOLUME_ID" --epoch "$SDE" \
    --hashes-out "$WORK/boot-files.json"

# -- 11. manifest ---------------------------------------------------------------------------
step manifest
"$PYTHON" "$HERE/lib/manifest.py" build --root "$ROOT" --out "$OUT/manifest.json" \
    --packages "$WORK/packages.tsv" --boot-packages "$BOOTPKG/debs" \
    --requirements "$WORK/wheelhouse/requirements.txt" \
    --removed-modules "$ROOT/usr/share/coldstation/removed-modules.txt" \
    --rootfs-tar-sha256 "$ROOTFS_SHA" --kernel-version "$KVER" \
    --boot-files "$WORK/boot-files.json" \
    --artifact "disk_image=$OUT/coldstation.img" --artifact "squashfs=$OUT/filesystem.squashfs" \
    --artifact "rootfs_tar_zst=$OUT/rootfs.tar.zst" --artifact "kernel=$OUT/vmlinuz" \
    --artifact "initrd=$OUT/initrd.img" \
    --meta "source_date_epoch=$SDE" --meta "git_commit=$GIT_COMMIT" \
    --meta "source=$SOURCE_MODE" --meta "suite=$SUITE" --meta "mirror=$MIRROR" \
    --meta "security_mirror=$SECURITY_MIRROR" --meta "squashfs_compression=$SQUASHFS_COMP" \
    --meta "appliance_wheel=$(basename "$APP_WHEEL")" \
    --meta "image_build_tree_sha256=$(cd "$HERE" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
(cd "$OUT" && sha256sum coldstation.img filesystem.squashfs rootfs.tar.zst vmlinuz initrd.img > SHA256SUMS)
if [ "${COLDSTATION_IMAGE_KEEP_ROOT:-0}" != 1 ]; then rm -rf "$ROOT"; fi
rm -rf "$SRC" "$WORK/boot"
step_done
TOTAL=$(( $(date +%s) - BUILD_START ))
printf '%-28s %5ss\n' total "$TOTAL" >> "$OUT/timings.txt"
log "done in ${TOTAL}s"
log "root filesystem (rootfs.tar) sha256: $ROOTFS_SHA"
cat "$OUT/SHA256SUMS"
ls -l "$OUT"
