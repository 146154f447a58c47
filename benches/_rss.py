"""Peak resident memory of this process (Linux), for the benchmarks' memory columns."""

from __future__ import annotations


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> int:
    """Resets the kernel's peak-RSS mark to the current RSS (Linux >= 4.0); returns that RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS") * 1024


def peak_rss() -> int:
    """The peak RSS since the last `reset_peak_rss`, in bytes."""
    return _status_kib("VmHWM") * 1024
