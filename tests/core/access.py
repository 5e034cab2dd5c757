"""Run a function in a thread that obeys file permission bits, even when the tests run as root.

``chmod 000`` does not stop root from reading: root holds the capabilities CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH. On Linux, capabilities belong to each thread, so a fresh thread can drop them
from its effective set (``capset``) without touching the rest of the test process; in that thread
an unreadable file or folder is unreadable, as it is for a normal user.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _drop_override_capabilities() -> str | None:
    """Drop the permission-override capabilities of the calling thread; returns an error or None."""
    if not sys.platform.startswith("linux"):
        return "dropping capabilities needs Linux"
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)  # pid 0: the calling thread
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        return f"capget failed: {os.strerror(ctypes.get_errno())}"
    data[0].effective &= ~((1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(header), data) != 0:
        return f"capset failed: {os.strerror(ctypes.get_errno())}"
    return None


def call_obeying_permissions(fn: Callable[[], T]) -> T:
    """Call ``fn()`` where permission bits apply, and return its result or raise its exception.

    As a normal user they always apply, and ``fn`` runs directly. As root it runs in a thread without
    the override capabilities; the test is skipped, with the reason, where they cannot be dropped.
    """
    if os.name != "posix" or os.geteuid() != 0:
        return fn()
    outcome: dict[str, object] = {}

    def body() -> None:
        problem = _drop_override_capabilities()
        if problem:
            outcome["skip"] = problem
            return
        try:
            outcome["result"] = fn()
        except BaseException as e:
            outcome["error"] = e

    thread = threading.Thread(target=body, name="obeying-permissions")
    thread.start()
    thread.join()
    if "skip" in outcome:
        pytest.skip(f"running as root and cannot drop the permission override: {outcome['skip']}")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["result"]  # type: ignore[return-value]
