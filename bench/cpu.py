"""CPU time from /proc, read before and after each measured batch.

Per batch: the worker processes' own time (utime+stime), what their steps used (their reaped
children and any still alive), the Temporal dev server, the PostgreSQL cluster where there is
one, this driver process, and the machine's busy time (/proc/stat); background is the machine's
busy time minus all of those.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
MEASURED = ("worker", "steps", "server", "database", "driver")


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd (state) on


def own_seconds(pid: int) -> float:
    """utime + stime of every thread of the process."""
    try:
        fields = _stat(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def tree_seconds(pid: int) -> float:
    """The process, its reaped children (cutime + cstime) and its live descendants."""
    try:
        fields = _stat(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    own = sum(int(f) for f in fields[11:15]) / TICK
    return own + sum(tree_seconds(child) for child in children_of(pid))


def machine_busy_seconds() -> float:
    """All CPUs' busy time: user, nice, system, irq, softirq, steal (not idle, iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / TICK


def dev_server_pid() -> int | None:
    """The `temporal` binary among this process's children (the SDK starts the dev server)."""
    for child in children_of(os.getpid()):
        try:
            if Path(os.readlink(f"/proc/{child}/exe")).name == "temporal":
                return child
        except OSError:
            continue
    return None


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Processes:
    """Whose CPU a batch is charged: the workers under test, the dev server, the database."""

    workers: tuple[int, ...]
    server: int | None
    database: int | None = None

    def snapshot(self) -> dict[str, float]:
        own = sum(own_seconds(p) for p in self.workers)
        tree = sum(tree_seconds(p) for p in self.workers)
        return {
            "worker": own,
            "steps": tree - own,
            "server": tree_seconds(self.server) if self.server else 0.0,
            "database": tree_seconds(self.database) if self.database else 0.0,
            "driver": own_seconds(os.getpid()),
            "machine": machine_busy_seconds(),
        }


class Tally:
    """CPU seconds summed over measured batches, and the promotions they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.count = 0

    def add(self, before: dict[str, float], after: dict[str, float], count: int = 1) -> None:
        for name, value in after.items():
            self.seconds[name] += value - before[name]
        self.count += count

    def per_workflow_ms(self) -> dict[str, float]:
        each = {name: 1000 * self.seconds[name] / max(self.count, 1) for name in MEASURED}
        machine = 1000 * self.seconds["machine"] / max(self.count, 1)
        each["background"] = machine - sum(each.values())
        each["machine"] = machine
        return {name: round(value, 1) for name, value in each.items()}
