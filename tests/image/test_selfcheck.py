"""The boot self-check (image-build/rootfs/usr/lib/coldstation/selfcheck) against fake
/sys and /proc trees: what a station with only ``lo``, a NIC without a driver, a USB
Ethernet adapter, a Bluetooth dongle, a loaded networking module or no state medium
looks like to it. Fast; runs in ``make test``."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SELFCHECK = (
    Path(__file__).resolve().parents[2]
    / "image-build"
    / "rootfs"
    / "usr"
    / "lib"
    / "coldstation"
    / "selfcheck"
)
CONFIG = Path(__file__).resolve().parents[2] / "image-build" / "config" / "selfcheck.conf"


def load_selfcheck():
    loader = importlib.machinery.SourceFileLoader("coldstation_selfcheck", str(SELFCHECK))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses look their module up there
    loader.exec_module(module)
    return module


selfcheck = load_selfcheck()


class FakeMachine:
    """A /sys, /proc and /lib/modules tree the self-check reads instead of the real ones."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.sys = base / "sys"
        self.proc = base / "proc"
        self.modules = base / "modules"
        self.state = base / "state-medium"
        self.devices = self.sys / "devices" / "pci0000:00"
        (self.sys / "class" / "net" / "lo").mkdir(parents=True)
        (self.sys / "bus" / "pci" / "devices").mkdir(parents=True)
        (self.sys / "bus" / "usb" / "devices").mkdir(parents=True)
        (self.proc / "sys" / "kernel").mkdir(parents=True)
        (self.proc / "self").mkdir(parents=True)
        (self.proc / "sys" / "kernel" / "osrelease").write_text("6.1.0-test-amd64\n")
        (self.proc / "modules").write_text("squashfs 69632 1 - Live 0x0\n")
        (self.modules / "6.1.0-test-amd64" / "kernel" / "fs").mkdir(parents=True)
        self.state.mkdir()
        self.mount(str(self.state), "ext4", "/dev/vdb", "rw,relatime")
        self.pci("0000:00:00.0", "0x060000", "0x8086", "0x1237")
        self.pci("0000:00:02.0", "0x030000", "0x1234", "0x1111", driver="bochs-drm")

    def mount(self, point: str, fstype: str, source: str, options: str) -> None:
        with (self.proc / "self" / "mountinfo").open("a") as handle:
            handle.write(f"30 1 0:27 / {point} {options} shared:1 - {fstype} {source} rw\n")

    def pci(self, slot: str, klass: str, vendor: str, device: str, driver: str = "") -> None:
        node = self.devices / slot
        node.mkdir(parents=True)
        for name, value in (("class", klass), ("vendor", vendor), ("device", device)):
            (node / name).write_text(value + "\n")
        if driver:
            target = self.sys / "bus" / "pci" / "drivers" / driver
            target.mkdir(parents=True, exist_ok=True)
            (node / "driver").symlink_to(target)
        (self.sys / "bus" / "pci" / "devices" / slot).symlink_to(node)

    def usb(
        self,
        name: str,
        vendor: str,
        product: str,
        classes: list[str],
        label: str = "Gadget",
        serial: str = "",
    ) -> None:
        device = self.devices / "0000:00:04.0" / "usb1" / name
        device.mkdir(parents=True)
        for key, value in (("idVendor", vendor), ("idProduct", product), ("product", label)):
            (device / key).write_text(value + "\n")
        if serial:
            (device / "serial").write_text(serial + "\n")
        (self.sys / "bus" / "usb" / "devices" / name).symlink_to(device)
        for number, klass in enumerate(classes):
            interface = device / f"{name}:1.{number}"
            interface.mkdir()
            (interface / "bInterfaceClass").write_text(klass + "\n")
            (self.sys / "bus" / "usb" / "devices" / interface.name).symlink_to(interface)

    def run(self, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                str(SELFCHECK),
                "--config",
                str(CONFIG),
                "--sys",
                str(self.sys),
                "--proc",
                str(self.proc),
                "--modules",
                str(self.modules),
                "--no-tokens",
                "--state-dir",
                str(self.state),
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def machine(tmp_path) -> FakeMachine:
    return FakeMachine(tmp_path)


def test_a_clean_station_passes(machine):
    machine.usb("1-1", "04e6", "5116", ["0b"], label="Smart card reader", serial="21120845")
    machine.usb("1-2", "046d", "0825", ["0e", "0e", "01", "01"], label="Webcam C270")
    machine.usb("1-3", "413c", "2113", ["03", "03"], label="Keyboard")
    done = machine.run()
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines()[-1] == "coldstation self-check: OK"
    assert "network interfaces: lo" in done.stdout
    assert "04e6:5116 Smart card reader serial 21120845" in done.stdout
    assert f"state medium: /dev/vdb (ext4) at {machine.state}" in done.stdout


def test_a_pci_nic_without_a_driver_is_an_unexpected_device_class(machine):
    machine.pci("0000:00:03.0", "0x020000", "0x8086", "0x100e")  # e1000, no driver bound
    done = machine.run()
    assert done.returncode == 1
    assert (
        "unexpected device class: PCI 0000:00:03.0 class 0x020000 (network controller), "
        "vendor 8086 device 100e, driver -"
    ) in done.stdout
    assert done.stdout.rstrip().splitlines()[-1].startswith("=====")
    assert "coldstation self-check: FAILED" in done.stdout


@pytest.mark.parametrize(
    ("klass", "what"),
    [
        ("0x028000", "network controller"),  # Wi-Fi cards are network controllers (0280)
        ("0x0d1100", "wireless controller"),  # Bluetooth
        ("0x070300", "modem"),
        ("0x0c0010", "FireWire controller"),
    ],
)
def test_every_network_capable_pci_class_halts(machine, klass, what):
    machine.pci("0000:00:05.0", klass, "0x14e4", "0x43a0")
    done = machine.run()
    assert done.returncode == 1
    assert f"class {klass} ({what})" in done.stdout


@pytest.mark.parametrize(
    ("classes", "klass"),
    [
        (["02", "0a"], "02"),  # CDC Ethernet (qemu usb-net, phones' tethering)
        (["e0", "e0"], "e0"),  # Bluetooth dongle
        (["ff"], "ff"),  # vendor-specific: Realtek/ASIX USB Ethernet, most Wi-Fi sticks
        (["ef"], "ef"),  # RNDIS
    ],
)
def test_usb_network_adapters_halt(machine, classes, klass):
    machine.usb("2-1", "0bda", "8153", classes, label="USB 10/100/1000 LAN")
    done = machine.run()
    assert done.returncode == 1
    assert (
        f"unexpected device class: USB 2-1:1.0 (0bda:8153 USB 10/100/1000 LAN) "
        f"interface class 0x{klass}" in done.stdout
    )


def test_an_allowlisted_usb_device_passes(machine, tmp_path):
    machine.usb("2-1", "1050", "0407", ["03", "0b", "ff"], label="Security key")
    config = tmp_path / "selfcheck.conf"
    config.write_text(
        CONFIG.read_text().replace("usb_allow_devices =", "usb_allow_devices = 1050:0407")
    )
    done = machine.run("--config", str(config))
    assert done.returncode == 0, done.stdout


def test_a_network_interface_or_radio_halts(machine):
    (machine.sys / "class" / "net" / "wlan0").mkdir()
    (machine.sys / "class" / "bluetooth" / "hci0").mkdir(parents=True)
    done = machine.run()
    assert done.returncode == 1
    assert "network interface wlan0 exists (only lo is allowed)" in done.stdout
    assert "Bluetooth adapter hci0 is registered" in done.stdout


def test_a_removed_module_loaded_or_back_on_disk_halts(machine, monkeypatch, tmp_path):
    removed = tmp_path / "removed-modules.txt"
    removed.write_text("e1000\ncfg80211\n")
    monkeypatch.setattr(selfcheck, "REMOVED_MODULES", removed)
    (machine.proc / "modules").write_text("cfg80211 1 0 - Live 0x0\n")
    (machine.modules / "6.1.0-test-amd64" / "kernel" / "drivers" / "net").mkdir(parents=True)
    args = selfcheck.argparse.Namespace(
        config=str(CONFIG),
        state_dir=str(machine.state),
        sys=str(machine.sys),
        proc=str(machine.proc),
        modules=str(machine.modules),
        no_state=False,
        boot=False,
    )
    report = selfcheck.run(args)
    assert "kernel module cfg80211 is loaded, but the image removed it" in report.problems
    assert any("drivers/net exists" in problem for problem in report.problems)


def test_no_state_medium_refuses(machine, tmp_path):
    elsewhere = tmp_path / "not-mounted"
    elsewhere.mkdir()
    done = machine.run("--state-dir", str(elsewhere))
    assert done.returncode == 1
    assert f"no state medium: nothing is mounted at {elsewhere}" in done.stdout
    assert "will not keep its journal and keys in memory" in done.stdout


@pytest.mark.parametrize("appears", [True, False])
def test_a_medium_udev_names_late_is_mounted_and_a_missing_one_still_fails(
    machine, tmp_path, monkeypatch, appears
):
    """At boot, systemd waits 20 s for the medium's device; a slower udev (a loaded CI
    machine's qemu did this) must not halt a station whose medium is there. The boot check
    waits for udev and mounts it (here: the mount appears in mountinfo); without a medium
    it still fails, naming the missing medium."""
    late = tmp_path / "late-medium"
    late.mkdir()
    asked = []

    def mount_late(settings) -> bool:
        asked.append(settings.state_dir)
        if appears:
            machine.mount(str(late), "ext4", "/dev/sdb1", "rw,relatime")
        return appears

    monkeypatch.setattr(selfcheck, "mount_late", mount_late)
    settings = selfcheck.Settings.load(CONFIG)
    settings.state_dir = str(late)
    report = selfcheck.Report()
    selfcheck.check_state(machine.proc, settings, report, prepare=False, late=True)
    assert asked == [str(late)]
    if appears:
        assert report.problems == [], report.problems
        assert any("mounted late" in note for note in report.notes), report.notes
    else:
        assert any("no state medium" in problem for problem in report.problems)
    asked.clear()
    selfcheck.check_state(machine.proc, settings, selfcheck.Report(), prepare=False)
    assert asked == []  # only the boot check on the real machine mounts anything


def test_the_late_mount_uses_the_options_fstab_gives_the_medium():
    """The self-check mounts a late medium itself: with exactly fstab's filesystem type and
    options (nosuid, nodev, noexec), never looser."""
    fstab = (SELFCHECK.parents[3] / "etc" / "fstab").read_text()
    line = next(x.split() for x in fstab.splitlines() if x.startswith("LABEL=COLDSTATE "))
    options = {o for o in line[3].split(",") if o != "nofail" and not o.startswith("x-")}
    assert line[2] == selfcheck.STATE_FSTYPE
    assert options == set(selfcheck.STATE_MOUNT_OPTIONS.split(","))


@pytest.mark.parametrize(
    ("devices", "mounted"), [(["/dev/vdb"], True), ([], False), (["/dev/sdb1", "/dev/sdc1"], False)]
)
def test_a_late_medium_is_found_by_probing_and_never_guessed(monkeypatch, devices, mounted):
    """After udev settles, the medium is found by blkid's own probe (no udev link needed);
    none, or two media with the label, mount nothing."""
    calls = []

    def run(argv, **_):
        calls.append(argv)
        out = "\n".join(devices) if argv[0] == "blkid" else ""
        return subprocess.CompletedProcess(argv, 0 if argv[0] != "blkid" or devices else 2, out)

    monkeypatch.setattr(selfcheck.subprocess, "run", run)
    settings = selfcheck.Settings.load(CONFIG)
    assert selfcheck.mount_late(settings) is mounted
    assert calls[0][:2] == ["udevadm", "settle"]
    assert calls[1][:3] == ["blkid", "-c", "/dev/null"] and "LABEL=COLDSTATE" in calls[1]
    mounts = [c for c in calls if c[0] == "mount"]
    if mounted:
        assert mounts == [
            ["mount", "-t", "ext4", "-o", "rw,nosuid,nodev,noexec", "/dev/vdb", settings.state_dir]
        ]
    else:
        assert mounts == []


@pytest.mark.parametrize("fstype", ["tmpfs", "overlay", "squashfs"])
def test_a_state_directory_in_memory_or_on_the_image_refuses(machine, tmp_path, fstype):
    point = tmp_path / "memory"
    point.mkdir()
    machine.mount(str(point), fstype, "none", "rw")
    done = machine.run("--state-dir", str(point))
    assert done.returncode == 1
    assert f"is {fstype} (none), not a disk filesystem" in done.stdout


def test_a_read_only_state_medium_refuses(machine, tmp_path):
    point = tmp_path / "ro"
    point.mkdir()
    machine.mount(str(point), "ext4", "/dev/sdb1", "ro,relatime")
    done = machine.run("--state-dir", str(point))
    assert done.returncode == 1
    assert "is mounted read-only" in done.stdout


def test_pinned_devices_must_be_present(machine):
    machine.usb("1-1", "04e6", "5116", ["0b"], label="Smart card reader", serial="21120845")
    (machine.state / "expected-devices.txt").write_text(
        "# the ceremony's reader and HSM\n04e6:5116 21120845\n20a0:4230\n"
    )
    done = machine.run()
    assert done.returncode == 1
    assert "pinned device present: 04e6:5116 21120845" in done.stdout
    assert "pinned device 20a0:4230 (expected-devices.txt) is not present" in done.stdout


def test_hotplug_mode_checks_devices_only_and_is_quiet_when_clean(machine):
    done = machine.run("--hotplug", "--no-halt", "--state-dir", "/nonexistent")
    assert done.returncode == 0 and done.stdout == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="creates the state directory owned by a user")
def test_boot_mode_prepares_the_state_directory(machine, tmp_path):
    config = tmp_path / "selfcheck.conf"
    config.write_text(CONFIG.read_text().replace("state_user = coldstation", "state_user = root"))
    args = selfcheck.argparse.Namespace(
        config=str(config),
        state_dir=str(machine.state),
        sys=str(machine.sys),
        proc=str(machine.proc),
        modules=str(machine.modules),
        no_state=False,
        boot=True,
    )
    report = selfcheck.run(args)
    assert not report.problems
    assert (machine.state / "state").is_dir()
    assert (machine.state / "state").stat().st_mode & 0o777 == 0o700
    assert f"created {machine.state / 'state'} for root" in report.notes


SLOTS = """Available slots:
Slot 0 (0xc9ac7b0): SoftHSM slot ID 0xc9ac7b0
  token label        : coldstation-signing
  token manufacturer : SoftHSM project
  token model        : SoftHSM v2
  token flags        : login required, rng, token initialized, PIN initialized
  hardware version   : 2.6
  firmware version   : 2.6
  serial num         : a771ecd58c9ac7b0
  pin min/max        : 4/255
Slot 1 (0x1): SoftHSM slot ID 0x1
  token state:   uninitialized
"""


def test_tokens_are_listed_with_firmware_and_serial():
    tokens = selfcheck.parse_token_slots("/usr/lib/softhsm/libsofthsm2.so", SLOTS)
    assert tokens == [
        selfcheck.Token(
            "/usr/lib/softhsm/libsofthsm2.so",
            "coldstation-signing",
            "SoftHSM project",
            "SoftHSM v2",
            "2.6",
            "a771ecd58c9ac7b0",
        )
    ]
    assert "firmware 2.6, serial a771ecd58c9ac7b0" in tokens[0].describe()


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("token a771ecd58c9ac7b0", None),
        ("token a771ecd58c9ac7b0 firmware 2.6", None),
        ("token a771ecd58c9ac7b0 firmware 2.7", "has firmware 2.6, expected 2.7"),
        (
            "token 0000000000000000",
            "pinned token 0000000000000000 (expected-devices.txt) is not present",
        ),
    ],
)
def test_pinned_tokens_must_match_serial_and_firmware(machine, line, problem):
    (machine.state / "expected-devices.txt").write_text(line + "\n")
    settings = selfcheck.Settings(state_dir=str(machine.state))
    report = selfcheck.Report()
    tokens = selfcheck.parse_token_slots("softhsm", SLOTS)
    selfcheck.check_pinned_devices(machine.sys, settings, report, tokens)
    if problem is None:
        assert report.problems == [] and report.notes == [f"pinned token present: {line}"]
    else:
        assert len(report.problems) == 1 and problem in report.problems[0]
