"""How long the command line takes to answer before any work: `prh --help`, `prh experiment --help` and
`python -c "import prh"`, beside `python -c "import torch"` (what a help text would cost if it loaded torch) and a
bare `python -c pass` (the interpreter's own start).

Each command runs in a fresh subprocess R times (default 7). Printed, in seconds: the minimum and the median wall
time, and the minimum CPU time (user + system of the child), which other load on the machine changes much less than
the wall time. On a loaded machine read the CPU column, and compare rows of one run rather than numbers across runs.
Usage: ``python benchmarks/cli_startup.py [--repeats 7]`` (``src/`` goes first on the path, so the checkout is
measured, not an installed copy).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    'python -c "import prh"': ["-c", "import prh"],
    "prh --help": ["-m", "prh", "--help"],
    "prh experiment --help": ["-m", "prh", "experiment", "--help"],
    'python -c "import torch"': ["-c", "import torch"],
}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(args: list[str], repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU times (seconds) of ``python <args>`` run ``repeats`` times, each in a new process."""
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    wall, cpu = [], []
    for _ in range(repeats):
        cpu_before, start = _children_cpu(), time.perf_counter()
        subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL)
        wall.append(time.perf_counter() - start)
        cpu.append(_children_cpu() - cpu_before)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(
        f"{'command':<26} {'wall min':>9} {'wall median':>12} {'cpu min':>8}   "
        f"(seconds; {args.repeats} runs each, {os.cpu_count()} cores)"
    )
    for name, argv in COMMANDS.items():
        wall, cpu = time_command(argv, args.repeats)
        print(f"{name:<26} {min(wall):9.3f} {statistics.median(wall):12.3f} {min(cpu):8.3f}")
    if hasattr(os, "getloadavg"):
        print(f"load average during the run: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
