#!/usr/bin/env bash
# Check a Coldstation image against a build manifest (the auditor's tool).
#
# Usage: image-build/verify.sh IMAGE MANIFEST [--deep]
#
# IMAGE is the disk image (coldstation.img, or the USB stick's device, e.g. /dev/sdX:
# only the image's length is read), the root filesystem (filesystem.squashfs), or the
# root filesystem tarball (rootfs.tar.zst or rootfs.tar).
#
# 1. The sha256 of IMAGE is compared with the manifest's. Equal: "IMAGE MATCHES", exit 0.
# 2. Otherwise, or with --deep, it looks inside to say what differs: the boot files on
#    the FAT partition (kernel, initramfs, squashfs, boot loaders and their
#    configuration), then every file of the root filesystem (content hash, type, size,
#    link target; mode and owner when it can see them) against the manifest's file list.
#    Any difference: "IMAGE DOES NOT MATCH", exit 1.
#
# Needs: sha256sum, python3; for a disk image mtools (mcopy); for a squashfs
# squashfs-tools (unsquashfs); for a tarball tar and zstd. No root needed, no mounts.
set -euo pipefail
export LC_ALL=C.UTF-8 MTOOLS_SKIP_CHECK=1

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MANIFEST_PY="$HERE/lib/manifest.py"
PYTHON=${PYTHON:-python3}
[ $# -ge 2 ] || { sed -n '2,20p' "$0"; exit 2; }
IMAGE=$1
MANIFEST=$2
DEEP=0
[ "${3:-}" = --deep ] && DEEP=1
[ -r "$IMAGE" ] || { echo "cannot read $IMAGE"; exit 2; }
[ -r "$MANIFEST" ] || { echo "cannot read $MANIFEST"; exit 2; }

get() { "$PYTHON" "$MANIFEST_PY" get "$MANIFEST" "$@"; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
FAILED=0
report() { printf '%s\n' "$*"; }
mismatch() { report "  MISMATCH: $*"; FAILED=1; }

# What is it? MBR boot signature / squashfs magic / tar / zstd.
magic=$(head -c 4 "$IMAGE" | od -An -tx1 | tr -d ' \n')
if [ "$magic" = 68737173 ]; then
    KIND=squashfs
elif [ "$magic" = 28b52ffd ]; then
    KIND=rootfs_tar_zst
elif [ "$(dd if="$IMAGE" bs=1 skip=257 count=5 2>/dev/null)" = ustar ]; then
    KIND=rootfs_tar
elif [ "$(dd if="$IMAGE" bs=1 skip=510 count=2 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 55aa ]; then
    KIND=disk_image
else
    echo "$IMAGE: not a disk image, squashfs or tarball"
    exit 2
fi

report "manifest: $MANIFEST (build $(get build git_commit), SOURCE_DATE_EPOCH $(get build source_date_epoch))"
if [ "$KIND" = rootfs_tar ]; then
    expected=$(get rootfs tar_sha256)
    size=$(stat -L -c %s "$IMAGE")
else
    expected=$(get artifacts "$KIND" sha256)
    size=$(get artifacts "$KIND" size)
fi
# A block device (the USB stick) is longer than the image: hash the image's length only.
if [ -b "$IMAGE" ]; then
    actual=$(head -c "$size" "$IMAGE" | sha256sum | cut -d' ' -f1)
else
    actual=$(sha256sum "$IMAGE" | cut -d' ' -f1)
fi
report "$KIND: sha256 $actual"
report "manifest:  sha256 $expected"
if [ "$actual" = "$expected" ] && [ "$DEEP" = 0 ]; then
    report "IMAGE MATCHES the manifest ($KIND)."
    exit 0
fi
[ "$actual" = "$expected" ] || FAILED=1

check_file() {  # check_file LABEL FILE EXPECTED_SHA256
    local got
    got=$(sha256sum "$2" | cut -d' ' -f1)
    if [ "$got" = "$3" ]; then report "  ok: $1"; else mismatch "$1: sha256 $got, manifest $3"; fi
}

check_squashfs() {  # check_squashfs FILE
    local squash=$1
    check_file "root filesystem (squashfs)" "$squash" "$(get artifacts squashfs sha256)"
    command -v unsquashfs >/dev/null || { report "  (install squashfs-tools to see which files differ)"; return; }
    report "root filesystem, file by file:"
    unsquashfs -lln "$squash" > "$TMP/listing.txt" 2>/dev/null || { mismatch "unsquashfs cannot read it"; return; }
    "$PYTHON" "$MANIFEST_PY" listing "$TMP/listing.txt" "$MANIFEST" | sed 's/^/  /' || FAILED=1
    unsquashfs -q -n -no-xattrs -d "$TMP/root" "$squash" >/dev/null 2>&1 || true
    owner=--no-owner; [ "$(id -u)" = 0 ] && owner=
    # shellcheck disable=SC2086
    "$PYTHON" "$MANIFEST_PY" tree "$TMP/root" "$MANIFEST" $owner | sed 's/^/  /' || FAILED=1
    chmod -R u+rwX "$TMP/root" 2>/dev/null || true
}

case "$KIND" in
disk_image)
    report "boot partition:"
    # The FAT partition starts at sector 2048 (1 MiB), as image-build/lib/mkdisk.py makes it.
    fat="$IMAGE@@1M"
    mkdir -p "$TMP/boot"
    for f in live/vmlinuz live/initrd.img live/filesystem.squashfs; do
        mcopy -n -i "$fat" "::/$f" "$TMP/boot/$(basename "$f")" 2>/dev/null || mismatch "$f missing on the boot partition"
    done
    [ -f "$TMP/boot/vmlinuz" ] && check_file "kernel /live/vmlinuz" "$TMP/boot/vmlinuz" "$(get artifacts kernel sha256)"
    [ -f "$TMP/boot/initrd.img" ] && check_file "initramfs /live/initrd.img" "$TMP/boot/initrd.img" "$(get artifacts initrd sha256)"
    "$PYTHON" - "$MANIFEST" > "$TMP/bootfiles.txt" <<'EOF'
import json, sys
for path, digest in sorted(json.load(open(sys.argv[1]))["boot_files"].items()):
    print(path, digest)
EOF
    while read -r path digest; do
        case "$path" in /live/*) continue ;; esac
        if mcopy -n -i "$fat" "::$path" "$TMP/bootfile" 2>/dev/null; then
            check_file "boot file $path" "$TMP/bootfile" "$digest"
        else
            mismatch "boot file $path missing"
        fi
    done < "$TMP/bootfiles.txt"
    mdir -/ -a -b -i "$fat" :: 2>/dev/null | sed 's|^::||' | LC_ALL=C sort > "$TMP/fatlist.txt" || true
    "$PYTHON" - "$MANIFEST" "$TMP/fatlist.txt" <<'EOF' || FAILED=1
import json, sys
known = set(json.load(open(sys.argv[1]))["boot_files"])
extra = []
for line in open(sys.argv[2]):
    path = line.strip()
    if path and not path.endswith("/") and path not in known:
        extra.append(path)
for path in extra:
    print(f"  MISMATCH: extra file on the boot partition: {path}")
sys.exit(1 if extra else 0)
EOF
    [ -f "$TMP/boot/filesystem.squashfs" ] && check_squashfs "$TMP/boot/filesystem.squashfs"
    ;;
squashfs)
    check_squashfs "$IMAGE"
    ;;
rootfs_tar|rootfs_tar_zst)
    mkdir -p "$TMP/root"
    if [ "$KIND" = rootfs_tar_zst ]; then
        zstd -dc "$IMAGE" > "$TMP/rootfs.tar"
        check_file "rootfs.tar (uncompressed)" "$TMP/rootfs.tar" "$(get rootfs tar_sha256)"
    else
        ln -s "$(readlink -f "$IMAGE")" "$TMP/rootfs.tar"
    fi
    tar -x -f "$TMP/rootfs.tar" -C "$TMP/root" --numeric-owner 2>/dev/null || true
    owner=--no-owner; [ "$(id -u)" = 0 ] && owner=
    report "root filesystem, file by file:"
    # shellcheck disable=SC2086
    "$PYTHON" "$MANIFEST_PY" tree "$TMP/root" "$MANIFEST" $owner | sed 's/^/  /' || FAILED=1
    chmod -R u+rwX "$TMP/root" 2>/dev/null || true
    ;;
esac

if [ "$FAILED" = 0 ]; then
    report "IMAGE MATCHES the manifest ($KIND, checked file by file)."
    exit 0
fi
report "IMAGE DOES NOT MATCH the manifest ($KIND)."
exit 1
