"""What the device reports about itself at enrollment."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from fedota import __version__
from fedota.client.identity import HARDWARE_CLASSES

GIB = 1024**3
CPUINFO = Path("/proc/cpuinfo")
MEMINFO = Path("/proc/meminfo")
# /proc/cpuinfo names the CPU differently per architecture (x86, then ARM boards).
_CPU_MODEL_KEYS = ("model name", "Model", "Hardware", "cpu model", "Processor")


@dataclass(frozen=True)
class HardwareProfile:
    hardware_class: str
    cpu_model: str
    cpu_count: int
    memory_bytes: int
    os: str
    python_version: str
    torch_version: str
    daemon_version: str


def hardware_class_for_memory(memory_bytes: int) -> str:
    """The model variant a device of this memory runs: >= 8 GiB fp32, >= 2 GiB int8, else int4."""
    if memory_bytes >= 8 * GIB:
        return "fp32"
    if memory_bytes >= 2 * GIB:
        return "int8"
    return "int4"


def cpu_model_from_cpuinfo(text: str) -> str:
    """The CPU model named in /proc/cpuinfo text, or "" when it names none."""
    for wanted in _CPU_MODEL_KEYS:
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == wanted and value.strip():
                return value.strip()
    return ""


def total_memory_bytes() -> int:
    """Physical memory, or 0 when the platform does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def available_memory_bytes() -> int:
    """Memory available to new work (MemAvailable), or 0 when the platform does not say."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def detect(hardware_class: str | None = None) -> HardwareProfile:
    """Profile this machine; `hardware_class` overrides the class guessed from memory.

    Raises:
        ValueError: `hardware_class` is not one of HARDWARE_CLASSES.
    """
    if hardware_class is not None and hardware_class not in HARDWARE_CLASSES:
        raise ValueError(
            f"hardware class {hardware_class!r} is not one of {', '.join(HARDWARE_CLASSES)}"
        )
    memory = total_memory_bytes()
    try:
        cpu_model = cpu_model_from_cpuinfo(CPUINFO.read_text())
    except OSError:
        cpu_model = ""
    try:
        # The installed version only: importing torch would cost seconds at every start.
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = ""
    return HardwareProfile(
        hardware_class=hardware_class or hardware_class_for_memory(memory),
        cpu_model=cpu_model or platform.processor() or platform.machine(),
        cpu_count=os.cpu_count() or 1,
        memory_bytes=memory,
        os=platform.platform(),
        python_version=platform.python_version(),
        torch_version=torch_version,
        daemon_version=__version__,
    )


__all__ = [
    "HardwareProfile",
    "available_memory_bytes",
    "cpu_model_from_cpuinfo",
    "detect",
    "hardware_class_for_memory",
    "total_memory_bytes",
]
