#!/usr/bin/env python3
"""Assemble the bootable raw disk image, without loop devices or mounts.

Layout: an MBR (SYSLINUX's mbr.bin, fixed disk id) with one active partition of type 0xEF
starting at 1 MiB, holding a FAT32 filesystem labelled COLDBOOT:

    /live/vmlinuz  /live/initrd.img  /live/filesystem.squashfs    what live-boot boots
    /syslinux/syslinux.cfg  ldlinux.sys  ldlinux.c32              BIOS boot (SYSLINUX)
    /EFI/BOOT/BOOTX64.EFI  /loader/...                            UEFI boot (systemd-boot)
    /coldstation/manifest-hashes.txt                             the hashes above

Deterministic: mkfs.fat --invariant with a fixed volume id, every file's time set to
SOURCE_DATE_EPOCH, mtools honours SOURCE_DATE_EPOCH for directories, files copied in a
fixed order, fixed disk identifier.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from manifest import sha256_file  # a sibling script: lib/ is on sys.path when run

MIB = 1 << 20
PART_START = 2048  # sectors


def run(*command: str, **kwargs: Any) -> None:
    subprocess.run(command, check=True, **kwargs)


def fat_hashes(fat: Path, work: Path, env: dict[str, str]) -> dict[str, str]:
    """sha256 of every file on the FAT filesystem, boot loader files included."""
    listing = subprocess.run(
        ["mdir", "-/", "-a", "-b", "-i", str(fat), "::"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    hashes = {}
    for line in sorted(listing.split()):
        path = line.removeprefix("::")
        if path.endswith("/"):
            continue
        copy = work / "hash.tmp"
        run("mcopy", "-n", "-i", str(fat), f"::{path}", str(copy), env=env)
        hashes[path] = sha256_file(copy)
        copy.unlink()
    return hashes


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in (
        "out",
        "work",
        "bootpkg",
        "config",
        "kernel",
        "initrd",
        "squashfs",
        "label",
        "volume-id",
        "epoch",
    ):
        parser.add_argument("--" + name, required=True)
    parser.add_argument("--hashes-out", help="write every boot file's sha256 here (JSON)")
    args = parser.parse_args()
    work, pkg, config = Path(args.work), Path(args.bootpkg), Path(args.config)
    epoch = int(args.epoch)
    shutil.rmtree(work, ignore_errors=True)
    stage = work / "stage"
    files: list[tuple[Path, str]] = [
        (Path(args.kernel), "live/vmlinuz"),
        (Path(args.initrd), "live/initrd.img"),
        (Path(args.squashfs), "live/filesystem.squashfs"),
        (config / "syslinux.cfg", "syslinux/syslinux.cfg"),
        (pkg / "usr/lib/systemd/boot/efi/systemd-bootx64.efi", "EFI/BOOT/BOOTX64.EFI"),
        (config / "loader/loader.conf", "loader/loader.conf"),
        (config / "loader/entries/coldstation.conf", "loader/entries/coldstation.conf"),
        (config / "loader/entries/serial.conf", "loader/entries/serial.conf"),
    ]
    stage.mkdir(parents=True)
    hashes = "".join(f"{sha256_file(src)}  /{dest}\n" for src, dest in files)
    (stage / "manifest-hashes.txt").write_text(hashes)
    files.append((stage / "manifest-hashes.txt", "coldstation/manifest-hashes.txt"))
    for src, _ in files:
        os.utime(src, (epoch, epoch))
    payload = sum(src.stat().st_size for src, _ in files)
    fat_mib = (payload + 48 * MIB) // MIB + 1
    fat = work / "fat.img"
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1", SOURCE_DATE_EPOCH=str(epoch))
    run(
        "mkfs.fat",
        "-F",
        "32",
        "-n",
        args.label,
        "-i",
        args.volume_id,
        "--invariant",
        "-h",
        str(PART_START),
        "-C",
        str(fat),
        str(fat_mib * 1024),
        stdout=subprocess.DEVNULL,
    )
    directories = set()
    for _, dest in files:
        parts = Path(dest).parent.parts
        directories.update("/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
    for directory in sorted(directories, key=lambda d: (d.count("/"), d)):
        run("mmd", "-i", str(fat), f"::/{directory}", env=env)
    for src, dest in files:
        run("mcopy", "-m", "-o", "-i", str(fat), str(src), f"::/{dest}", env=env)
    # SYSLINUX: boot sector and ldlinux.sys/ldlinux.c32 into /syslinux (mtools installer).
    run(str(pkg / "usr/bin/syslinux"), "--install", "--directory", "/syslinux", str(fat), env=env)
    if args.hashes_out:
        Path(args.hashes_out).write_text(json.dumps(fat_hashes(fat, work, env), indent=1) + "\n")
    disk = Path(args.out)
    size = PART_START * 512 + fat_mib * MIB
    with disk.open("wb") as handle:
        handle.truncate(size)
    layout = (
        f"label: dos\nlabel-id: 0x{args.volume_id.lower()}\nunit: sectors\n\n"
        f"start={PART_START}, size={fat_mib * MIB // 512}, type=ef, bootable\n"
    )
    run(
        "sfdisk",
        "--quiet",
        "--no-reread",
        "--no-tell-kernel",
        str(disk),
        input=layout.encode(),
        stdout=subprocess.DEVNULL,
    )
    mbr = (pkg / "usr/lib/syslinux/mbr/mbr.bin").read_bytes()[:440]
    with disk.open("r+b") as handle:
        handle.seek(0)
        handle.write(mbr)
        handle.seek(PART_START * 512)
        with fat.open("rb") as source:
            shutil.copyfileobj(source, handle, 16 * MIB)
    fat.unlink()
    os.utime(disk, (epoch, epoch))
    print(f"disk image {disk}: {size // MIB} MiB, FAT32 {args.label} at sector {PART_START}")


if __name__ == "__main__":
    main()
