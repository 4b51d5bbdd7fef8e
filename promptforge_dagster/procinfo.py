"""What identifies a process beyond its pid (Linux /proc): the host's boot id and a
process's start time, so a recycled pid or a rebooted host is never taken for the old one."""

from __future__ import annotations

import os


def boot_id() -> str:
    """This kernel's boot id (first 8 hex digits), or "" where there is none."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()[:8]
    except OSError:
        return ""


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (/proc/<pid>/stat field 22); None
    when the process is gone or this is not Linux."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def trim_heap() -> None:
    """Give the C heap's free memory back to the OS (glibc ``malloc_trim``); a no-op where
    there is no glibc. Freed small blocks otherwise stay in the process's RSS for good."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:
        pass
