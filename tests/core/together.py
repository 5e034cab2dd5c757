"""Run several Python processes at once, as two LadderLens programs sharing a library would."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run_together(script: str, arguments: list[list[str]], timeout: float) -> list[tuple[str, str]]:
    """Start ``python -c script *args`` once per entry of ``arguments``; wait for all of them.

    Returns each process's (stdout, stderr); fails the test, with what every process had printed,
    when one exits with an error or runs past ``timeout`` seconds (it is killed, never left behind).
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for args in arguments
    ]
    results: list[tuple[str, str]] = []
    try:
        for p in procs:
            results.append(p.communicate(timeout=timeout))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        results += [p.communicate() for p in procs[len(results) :]]
        pytest.fail(f"a process ran past {timeout} s: {results}")
    if any(p.returncode for p in procs):
        pytest.fail(f"exit codes {[p.returncode for p in procs]}: {results}")
    return results
