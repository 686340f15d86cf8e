"""Run the misuan command as a real subprocess (shared by the CLI tests of every capability)."""

import subprocess
import sys


def misuan(*args, check=True, timeout=300):
    r = subprocess.run([sys.executable, "-m", "misuan", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"misuan {' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r
