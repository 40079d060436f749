"""How long the command line takes to answer before any work: `prh --help`, `prh experiment --help` and
`python -c "import prh"`, beside `python -c "import torch"` (what a help text would cost if it loaded torch) and a
bare `python -c pass` (the interpreter's own start).

Each command runs in a fresh subprocess R times (default 7); the minimum and the median wall time are printed, in
seconds. On a loaded machine read the minimum, and compare rows of one run rather than numbers across runs.
Usage: ``python benchmarks/cli_startup.py [--repeats 7]`` (run from the repository root; ``src/`` goes first on the
path so the checkout is measured, not an installed copy).
"""

from __future__ import annotations

import argparse
import os
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


def time_command(args: list[str], repeats: int) -> list[float]:
    """Wall times (seconds) of ``python <args>`` run ``repeats`` times, each in a new process."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    }
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(
        f"{'command':<28} {'min s':>7} {'median s':>9}   ({args.repeats} runs each, {os.cpu_count()} cores)"
    )
    for name, argv in COMMANDS.items():
        times = time_command(argv, args.repeats)
        print(f"{name:<28} {min(times):7.3f} {statistics.median(times):9.3f}")
    if hasattr(os, "getloadavg"):
        print(f"load average during the run: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
