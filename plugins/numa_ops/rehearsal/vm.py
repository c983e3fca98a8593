"""The two-node guest: a Debian kernel booted by virtme-ng under QEMU's software emulation (TCG).

The guest sees the host's files read-only (9p) with writable overlays, and the rehearsal's outputs folder
read-write. Two nodes of one vCPU each, SLIT distance 21 between them. KVM is not used: on the machines
tried, QEMU stopped on an MSR it could not set, or saw none of the CPU's features and hung; software
emulation is slower but works everywhere.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

NODE_MEMORY_GB = 3  # each node's memory: room for torch's libraries in the page cache, read once
DISTANCE = 21
VENV_TAG = "numalab_venv"
# set for the guest (None: the guest's own, from the command): a worker's imports take minutes under emulation
GUEST_SETTINGS = {"NUMA_LAB_OUTPUTS": None, "NUMA_LAB_STARTUP_TIMEOUT_S": "1800"}
# drivers the guest does not need: loading them under emulation costs a minute of boot
SKIP_MODULES = "kvm,kvm_amd,kvm_intel,iTCO_wdt,pcspkr,sr_mod,ahci,libahci,psmouse,serio_raw,aesni_intel"
PT_INTERP = 3


class VmError(RuntimeError):
    """The guest cannot be started here, and why."""


@dataclass(frozen=True)
class Guest:
    """What the guest is booted with: virtme-ng, the kernel image, the host's venv, the repository's
    plugins, and the outputs folder it writes to."""

    vng: Path
    kernel: Path
    venv: Path
    plugins: Path
    outputs: Path


def kernel_image(boot: Path = Path("/boot")) -> Path | None:
    """The newest installed kernel image (``vmlinuz-*``), or None."""
    images = sorted(
        boot.glob("vmlinuz-*"), key=lambda p: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", p.name)]
    )
    return images[-1] if images else None


def missing() -> list[str]:
    """What this host lacks to boot the guest, one phrase each (empty: nothing)."""
    gaps = []
    if shutil.which("qemu-system-x86_64") is None:
        gaps.append("qemu-system-x86_64 (apt-get install qemu-system-x86)")
    if kernel_image() is None:
        gaps.append("a kernel image in /boot (apt-get install linux-image-amd64)")
    if not _static_busybox():
        gaps.append("a static busybox for the guest's initramfs (apt-get install busybox-static)")
    if shutil.which("numactl") is None:
        gaps.append("numactl (apt-get install numactl)")
    if _vng() is None:
        gaps.append("virtme-ng's vng (pip install -r requirements.txt)")
    return gaps


def _static_busybox() -> bool:
    """Whether ``busybox`` is statically linked (virtme-ng copies it into the guest's initramfs)."""
    path = shutil.which("busybox")
    return bool(path) and is_static_elf(Path(path))  # type: ignore[arg-type]


def is_static_elf(path: Path) -> bool:
    """A 64-bit little-endian ELF without an interpreter (no ``PT_INTERP`` program header)."""
    try:
        with path.open("rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return False
            phoff, phentsize, phnum = struct.unpack_from("<Q", head, 32)[0], *struct.unpack_from("<HH", head, 54)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != PT_INTERP for i in range(phnum))


def _vng() -> Path | None:
    here = Path(sys.executable).parent / "vng"
    found = here if here.is_file() else shutil.which("vng")
    return Path(found) if found else None


def find_guest(plugins: Path, outputs: Path) -> Guest:
    """The guest to boot from this host's tools; raises :class:`VmError` naming everything missing."""
    gaps = missing()
    if gaps:
        raise VmError("cannot start the two-node guest: missing " + "; ".join(gaps))
    return Guest(_vng(), kernel_image(), Path(sys.prefix), plugins, outputs)  # type: ignore[arg-type]


def guest_command(guest: Guest) -> list[str]:
    """The command the guest runs: the rehearsal's guest step, with numa-lab's environment."""
    python = guest.venv / "bin" / "python"
    env = [
        f"PYTHONPATH={guest.plugins}",
        f"NUMA_LAB_OUTPUTS={guest.outputs}",
        "PYTHONDONTWRITEBYTECODE=1",
        "PYTHONWARNINGS=ignore",
        "PYTHONUNBUFFERED=1",
        "HOME=/tmp",
        f"PATH={guest.venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
    ]
    env += [f"{k}={v}" for k, v in os.environ.items() if k.startswith("NUMA_LAB_") and k not in GUEST_SETTINGS]
    env += [f"{k}={v}" for k, v in GUEST_SETTINGS.items() if v is not None]
    return ["env", *env, str(python), "-m", "numa_ops.rehearsal.guest", str(guest.venv), VENV_TAG]


def vng_argv(guest: Guest) -> list[str]:
    """virtme-ng's command line: two nodes of one vCPU, distance 21, software emulation, the outputs folder
    writable, the venv exported a second time (the guest mounts it with page caching)."""
    memory = 2 * NODE_MEMORY_GB
    qemu = ["-nodefaults", "-fsdev", f"local,id={VENV_TAG},path={guest.venv},security_model=none,readonly=on",
            "-device", f"virtio-9p-pci,fsdev={VENV_TAG},mount_tag={VENV_TAG}"]
    return [
        str(guest.vng), "--run", str(guest.kernel), "--disable-kvm", "--force-9p",
        "--cpus", "2", "--memory", f"{memory}G",
        "--numa", f"{NODE_MEMORY_GB}G,cpus=0", "--numa", f"{NODE_MEMORY_GB}G,cpus=1",
        "--numa-distance", f"0,1={DISTANCE}",
        f"--rwdir={guest.outputs}", f"--qemu-opts={shlex.join(qemu)}",
        "--append", f"modprobe.blacklist={SKIP_MODULES}",
        "--exec", shlex.join(guest_command(guest)),
    ]


def boot(guest: Guest, timeout_s: float, out: TextIO | None = None) -> int:
    """Boot the guest, run the rehearsal's guest step in it, and return its exit status; raises
    :class:`VmError` if the emulator does not finish in ``timeout_s`` (it is then stopped, QEMU with it: they
    run in a session of their own).

    The guest's output is relayed line by line to ``out`` (standard output): QEMU reopens its own standard
    streams by path, which would truncate a file they were redirected to.
    """
    out = out or sys.stdout
    guest.outputs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PATH": f"{guest.vng.parent}:{os.environ.get('PATH', '')}"}  # vng runs virtme-run
    proc = subprocess.Popen(vng_argv(guest), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)

    def relay() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            out.write(line)
            out.flush()

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise VmError(f"the guest did not finish within {timeout_s:.0f} s; it was stopped") from None
    except BaseException:
        _stop(proc)
        raise
    reader.join(timeout=10)
    return rc


def _stop(proc: subprocess.Popen) -> None:
    """Stop vng and the QEMU it started (their own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait()
