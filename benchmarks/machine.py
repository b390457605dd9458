"""What every benchmark prints about the machine it ran on: the CPU model and the load average.

Speed figures must name the CPU (the fast kernels pay on AMD EPYC + MKL, not on Intel Xeon), and
the machines are shared: a 1-minute load average above the core count stretches wall times.
"""

import platform


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (else what the platform module knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> float:
    """The 1-minute load average (NaN where /proc/loadavg is missing)."""
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")
