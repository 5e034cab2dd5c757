"""Run several Python processes at once, as two LadderLens programs sharing a library would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest


def run_together(script: str, arguments: list[list[str]], timeout: float) -> list[tuple[str, str]]:
    """Start ``python -c script *args`` once per entry of ``arguments``; wait for all of them.

    Returns each process's (stdout, stderr); fails the test, with what every process had printed,
    when one exits with an error or they run past ``timeout`` seconds in all. Each process leads a
    process group of its own (with any child it starts, such as an encoder process), and a group
    still running when this returns, fails or is interrupted is killed: nothing is left behind.
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=os.name == "posix",
        )
        for args in arguments
    ]
    deadline = time.monotonic() + timeout
    results: list[tuple[str, str]] = []
    try:
        for p in procs:
            results.append(p.communicate(timeout=max(0.0, deadline - time.monotonic())))
    except subprocess.TimeoutExpired:
        _kill(procs)
        for p in procs[len(results) :]:
            try:
                results.append(p.communicate(timeout=10))
            except subprocess.TimeoutExpired:  # a pipe held open by a process outside the group
                results.append(("", "(no output: its pipes stayed open after it was killed)"))
        pytest.fail(f"the processes ran past {timeout} s: {results}")
    finally:
        _kill(procs)
    if any(p.returncode for p in procs):
        pytest.fail(f"exit codes {[p.returncode for p in procs]}: {results}")
    return results


def start_together(folder: str, count: int, timeout: float = 60) -> None:
    """Inside a script given to :func:`run_together`: say this process is ready (a file in
    ``folder``), then wait until ``count`` processes are, so that what follows starts at once in
    all of them. Exits with a message when the others do not come within ``timeout`` seconds."""
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, f"ready-{os.getpid()}"), "w").close()
    deadline = time.monotonic() + timeout
    while sum(name.startswith("ready-") for name in os.listdir(folder)) < count:
        if time.monotonic() > deadline:
            sys.exit(f"{folder}: the other processes did not get ready")
        time.sleep(0.001)


def _kill(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if os.name == "posix":
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)  # the group: the process and its children
        elif p.poll() is None:
            p.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=10)
