"""Boot the cold-station disk image under qemu-system-x86_64 and read its serial console.

The machine boots from the image like a PC from a USB stick: SeaBIOS, the image's MBR,
SYSLINUX. At SYSLINUX's ``boot:`` prompt (shown on the serial port too) the helper types
``serial``: the entry that puts the console and the appliance on ttyS0. With ``uefi`` it
boots through OVMF and systemd-boot instead, and picks the same entry in its menu. The state medium
is a second disk (ext4, label COLDSTATE). Software emulation (TCG) by default.

NICs are attached with no network backend at all ("no peer"): the guest sees the device,
nothing can leave the machine either way.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]|\r")
#: Printed by the appliance session just before it starts coldstation-appliance.
STARTED = "coldstation: starting the appliance"
#: The appliance's home screen (its title) drawn on the serial terminal.
HOME = "Coldstation"
HALTED = "System halted"
NIC_DEVICES = {
    "e1000": ["-device", "e1000"],
    "virtio-net": ["-device", "virtio-net-pci"],
    "usb-net": ["-device", "qemu-xhci", "-device", "usb-net"],
}


@dataclass
class BootResult:
    output: str  # serial console, escape sequences removed
    raw: str
    seconds: float  # power-on to the end condition (home screen, halt or timeout)
    reached: bool  # the appliance's home screen was drawn
    halted: bool
    events: dict[str, float]  # seconds from power-on to the first sight of each marker

    def tail(self, chars: int = 4000) -> str:
        return self.output[-chars:]


OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
#: systemd-boot's menu line for the serial entry, and the keys that pick it (down, Enter).
UEFI_MENU = "Coldstation (serial console"
UEFI_KEYS = b"\x1b[B\r"
EVENTS = {
    "SYSLINUX": "SYSLINUX 6",
    "systemd-boot menu": UEFI_MENU,
    "kernel": "Linux version",
    "systemd": "Welcome to Debian",
    "self-check done": "coldstation self-check: ",
    "appliance start": STARTED,
    "halted": HALTED,
}


def qemu_command(
    disk: Path, state: Path | None, nics: tuple[str, ...], uefi_vars: Path | None = None
) -> list[str]:
    accel = os.environ.get("COLDSTATION_QEMU_ACCEL", "tcg")
    machine = ["-machine", "pc"]
    if uefi_vars is not None:  # q35 with OVMF (UEFI), no Secure Boot
        machine = [
            "-machine",
            "q35",
            "-drive",
            f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
            "-drive",
            f"if=pflash,format=raw,file={uefi_vars}",
        ]
    command = [
        "qemu-system-x86_64",
        *machine,
        "-accel",
        accel,
        "-cpu",
        "max",
        "-smp",
        os.environ.get("COLDSTATION_QEMU_SMP", "1"),
        "-m",
        "2048",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-monitor",
        "none",
        "-no-reboot",
        "-nic",
        "none",
        "-drive",
        f"file={disk},format=raw,if=none,id=boot,readonly=on",
        "-device",
        "virtio-blk-pci,drive=boot,bootindex=0",
    ]
    if state is not None:
        command += [
            "-drive",
            f"file={state},format=raw,if=none,id=state",
            "-device",
            "virtio-blk-pci,drive=state",
        ]
    for nic in nics:
        command += NIC_DEVICES[nic]
    return command


def boot(
    disk: Path,
    state_image: Path | None,
    tmp: Path,
    nics: tuple[str, ...] = (),
    timeout: float | None = None,
    settle: float = 20.0,
    uefi: bool = False,
) -> BootResult:
    """Boot (BIOS and SYSLINUX, or with ``uefi`` OVMF and systemd-boot); stop at the
    appliance's home screen (plus ``settle`` seconds), at the halt, or after ``timeout``."""
    timeout = timeout or float(os.environ.get("COLDSTATION_BOOT_TIMEOUT", "1200"))
    state = None
    if state_image is not None:  # a copy: each boot starts from the same state medium
        state = tmp / "state.img"
        shutil.copyfile(state_image, state)
    uefi_vars = None
    if uefi:
        uefi_vars = tmp / "OVMF_VARS.fd"
        shutil.copyfile(OVMF_VARS, uefi_vars)
    process = subprocess.Popen(
        qemu_command(disk, state, nics, uefi_vars),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    chunks: list[bytes] = []
    log = (tmp / "serial.log").open("wb")  # as it arrives, to watch a boot: tail -f

    def read() -> None:
        while block := process.stdout.read1(4096):
            chunks.append(block)
            log.write(block)
            log.flush()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started = time.monotonic()
    typed = False
    reached_at = None
    end = None
    events: dict[str, float] = {}
    try:
        while time.monotonic() - started < timeout and process.poll() is None:
            time.sleep(0.5)
            raw = b"".join(chunks).decode("utf-8", "replace")
            text = ANSI.sub("", raw)
            for name, marker in EVENTS.items():
                if name not in events and marker in text:
                    events[name] = time.monotonic() - started
            if not typed and not uefi and "boot:" in text:
                process.stdin.write(b"serial\r")  # SYSLINUX: the label of the serial entry
                process.stdin.flush()
                typed = True
            if not typed and uefi and UEFI_MENU in text:
                time.sleep(1)
                process.stdin.write(UEFI_KEYS)
                process.stdin.flush()
                typed = True
            after = text.split(STARTED, 1)[1] if STARTED in text else ""
            if reached_at is None and HOME in after:
                reached_at = time.monotonic()
            if reached_at is not None and time.monotonic() - reached_at > settle:
                end = reached_at
                break
            if HALTED in text:
                end = time.monotonic()
                time.sleep(2)
                break
    finally:
        process.kill()
        process.wait(timeout=30)
        reader.join(timeout=10)
        log.close()
    raw = b"".join(chunks).decode("utf-8", "replace")
    text = ANSI.sub("", raw)
    seconds = (end or time.monotonic()) - started
    if reached_at is not None:
        events["home screen"] = reached_at - started
    return BootResult(
        output=text,
        raw=raw,
        seconds=seconds,
        reached=reached_at is not None,
        halted=HALTED in text,
        events=events,
    )
