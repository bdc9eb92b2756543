"""What every benchmark writes into RESULTS.md: the machine it ran on, and its own section."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    ram = ""
    try:
        names = re.findall(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = names[0].strip() if names else cpu
        memory = re.search(r"MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text())
        ram = f", {int(memory.group(1)) / 1024 / 1024:.0f} GiB RAM" if memory else ""
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}){ram}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace the section under ``heading`` in RESULTS.md (other benchmarks keep theirs)."""
    old = path.read_text() if path.exists() else "# Benchmark results\n\n"
    start = old.find(heading + "\n")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + section
    else:
        following = old.find("\n## ", start + len(heading))
        new = old[:start] + section + ("\n" + old[following + 1 :] if following >= 0 else "")
    path.write_text(new)
