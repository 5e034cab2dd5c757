"""Decode and embed photos in a child process, so the caller's own threads stay responsive.

Python threads share one interpreter lock. Indexing in threads of the app's process (decoding,
preprocessing, the model's forward pass) runs Python between its native calls, and every time the
GUI thread wanted the lock back it could wait behind several of them: the window's paint passes
took 3 ms of CPU and up to 50 ms of wall time while indexing ran (benchmarks/bench_gui.py). In a
child process that work shares only the CPUs with the app, and there the scheduler's priorities
work: the child runs at a lower one (nice 10).

The parent keeps all of the library's bookkeeping (walk, hashes, catalog, vectors, index); the
child only turns file paths into metadata and vectors. It loads the same model from the same spec
and checks that it got the same identity (architecture and weights) before it answers anything.

Protocol: two pipes, pickled messages framed by :mod:`multiprocessing.connection`.

* parent -> child: ``("load", spec, identity_key, arch, arch_config)`` once, then
  ``("encode", seq, paths)``. ``arch_config`` is open_clip's config of the architecture, for the
  child to register when it does not know that name (one registered at run time, in the parent).
* child -> parent: ``("ready", dim)`` or ``("failed", message)``; for each request
  ``("encoded", seq, outcomes, vectors)``: per path either ``(width, height, taken_at,
  orientation)`` or the reason it failed (a string), and one vector row per decoded path.

The child exits when its input pipe closes (the parent closed it, or died), so it never outlives
the app.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DecodeError, ModelError

if TYPE_CHECKING:
    from .embedder import Embedder
    from .models import ModelIdentity

logger = logging.getLogger(__name__)

CHILD_NICENESS = 10  # how much lower the child's CPU priority is than its parent's
READY_TIMEOUT_S = 600.0  # importing torch and loading a large model on a slow disk
# Per path: (width, height, taken_at, orientation) when decoded, else the reason it failed.
Outcome = tuple[int, int, "str | None", int] | str


class EncoderProcess:
    """A child process that decodes photos and embeds them with the model ``spec`` names.

    Args:
        spec: the model spec (as the library's ``model=`` takes it).
        identity: the parent's model's identity; the child refuses to run a model with another
            one, so both always make the same vectors.
        workers: decode threads in the child.
        niceness: how much lower the child's CPU priority is (0: the same as the parent's).

    Raises (from :meth:`wait_ready`, :meth:`receive`):
        ModelError: the child could not load the model, or stopped.
    """

    def __init__(
        self,
        spec: str,
        identity: ModelIdentity,
        *,
        workers: int | None = None,
        niceness: int = CHILD_NICENESS,
    ) -> None:
        import open_clip

        self.spec = spec
        self.identity = identity
        self.dim: int | None = None
        self._seq = 0
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        command = [sys.executable, "-m", "core.encoder_process", str(to_child_r), str(from_child_w)]
        # Relative to the app's own priority, not to the calling thread's (an indexing thread may
        # already run lower: the child starts with that thread's priority).
        level = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + max(0, niceness))
        command += ["--nice-level", str(level)]
        if workers:
            command += ["--workers", str(workers)]
        try:
            self._proc = subprocess.Popen(
                command,
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # the pipes carry the protocol; stderr shows the child's logs
                env=env,
            )
        except OSError as exc:
            for fd in (to_child_w, from_child_r):
                os.close(fd)
            raise ModelError(f"Could not start the indexing process: {exc}") from exc
        finally:
            os.close(to_child_r)  # the child's ends: its copies stay open in the child
            os.close(from_child_w)
        self._send = Connection(to_child_w, readable=False, writable=True)
        self._recv = Connection(from_child_r, readable=True, writable=False)
        arch_config = open_clip.get_model_config(identity.arch)
        self._send.send(("load", spec, identity.key, identity.arch, arch_config))

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None and not self._send.closed

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> int:
        """Block until the child has loaded the model; returns the vector dimension."""
        if self.dim is not None:
            return self.dim
        message = self._next(timeout_s, "loading the model")
        if message[0] == "failed":
            self.close()
            raise ModelError(f"The indexing process could not load the model: {message[1]}")
        self.dim = int(message[1])
        return self.dim

    def submit(self, paths: Sequence[str]) -> int:
        """Ask for ``paths`` to be decoded and embedded; returns the request's number for :meth:`receive`."""
        self._seq += 1
        try:
            self._send.send(("encode", self._seq, list(paths)))
        except OSError as exc:
            raise self._stopped("sending it photos") from exc
        return self._seq

    def receive(self, seq: int, timeout_s: float | None = None) -> tuple[list[Outcome], np.ndarray]:
        """The answer to request ``seq``: one outcome per path, and the vectors of the decoded ones.

        Answers to earlier requests nobody waited for (a cancelled run's) are skipped.
        """
        self.wait_ready()
        while True:
            message = self._next(timeout_s, "embedding photos")
            if message[0] == "encoded" and message[1] == seq:
                return message[2], message[3]
            if message[0] != "encoded" or message[1] > seq:
                self.close()
                raise ModelError(f"The indexing process answered out of turn: {message[0]!r}")

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the child (it finishes the photo batch it is on) and reap it."""
        for conn in (self._send, self._recv):
            if not conn.closed:
                conn.close()
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def _next(self, timeout_s: float | None, doing: str) -> Any:
        try:
            if timeout_s is not None and not self._recv.poll(timeout_s):
                self.close(0.0)
                raise ModelError(f"The indexing process did not answer in {timeout_s:.0f} s while {doing}.")
            return self._recv.recv()
        except (EOFError, OSError) as exc:
            raise self._stopped(doing) from exc

    def _stopped(self, doing: str) -> ModelError:
        code = self._proc.poll()
        if code is None:
            try:
                code = self._proc.wait(5.0)
            except subprocess.TimeoutExpired:
                code = None
        self.close(0.0)
        if code is None:
            how = "still running"
        else:
            how = f"exit status {code}" if code >= 0 else f"killed by signal {-code}"
        return ModelError(f"The indexing process stopped unexpectedly while {doing} ({how}).")


# ---------------------------------------------------------------------- the child


# A request: its number, and per path the future of its decoded (metadata, model input).
_Request = tuple[int, list[tuple[str, Future]]]


def _serve(inbox: Connection, outbox: Connection, workers: int | None) -> int:
    from .decode import default_workers

    embedder = _load(inbox, outbox)
    if isinstance(embedder, int):
        return embedder
    # Decoding of the next request overlaps the model's work on this one: a reader thread hands
    # each request's paths to the decode pool as soon as it arrives.
    decoders = ThreadPoolExecutor(max_workers=workers or default_workers(), thread_name_prefix="decode")
    requests: queue.Queue[_Request | None] = queue.Queue()
    threading.Thread(
        target=_read_requests, args=(inbox, decoders, embedder, requests), name="requests", daemon=True
    ).start()
    try:
        while (request := requests.get()) is not None:
            seq, futures = request
            outbox.send(("encoded", seq, *_encode(embedder, futures)))
    finally:
        decoders.shutdown(wait=False, cancel_futures=True)
    return 0


def _load(inbox: Connection, outbox: Connection) -> Embedder | int:
    """Load the model the parent names and check its identity; the embedder, or the exit status."""
    from .embedder import Embedder
    from .models import register_configs

    kind, spec, identity_key, arch, arch_config = inbox.recv()
    if kind != "load":
        return 2
    try:
        # the parent's architecture, when this process does not know it (registered at run time there)
        register_configs({arch: arch_config} if arch_config is not None else None)
        embedder = Embedder.from_spec(spec, device="cpu")
    except Exception as exc:  # the parent reports it; its own copy of the model loaded fine
        outbox.send(("failed", str(exc) or type(exc).__name__))
        return 1
    if embedder.identity.key != identity_key:
        outbox.send(("failed", f"it loaded {embedder.identity.key}, not {identity_key}"))
        return 1
    outbox.send(("ready", embedder.dim))
    return embedder


def _read_requests(
    inbox: Connection, decoders: ThreadPoolExecutor, embedder: Embedder, requests: queue.Queue
) -> None:
    """Hand each request's paths to the decode pool as it arrives; ``None`` once the parent is gone."""
    from .decode import open_image

    def prepare(path: str) -> tuple[Outcome, Any]:
        decoded = open_image(path, embedder.image_size)
        meta = (decoded.width, decoded.height, decoded.taken_at, decoded.orientation)
        return meta, embedder.preprocess(decoded.image)

    try:
        while True:
            _kind, seq, paths = inbox.recv()
            requests.put((seq, [(path, decoders.submit(prepare, path)) for path in paths]))
    except (EOFError, OSError):  # the parent closed the pipe, or is gone
        requests.put(None)


def _encode(embedder: Embedder, futures: list[tuple[str, Future]]) -> tuple[list[Outcome], np.ndarray]:
    """One outcome per path, and the vectors of the decoded ones."""
    import torch

    outcomes: list[Outcome] = []
    pixels = []
    for path, future in futures:
        try:
            meta, tensor = future.result()
        except Exception as exc:
            outcomes.append(_failure_reason(path, exc))
        else:
            outcomes.append(meta)
            pixels.append(tensor)
    if not pixels:
        return outcomes, np.zeros((0, embedder.dim), np.float32)
    return outcomes, embedder.encode_image_batch(torch.stack(pixels))


def _failure_reason(path: str, error: Exception) -> str:
    from .decode import failure_reason

    if not isinstance(error, DecodeError | OSError):
        logger.error("unexpected error on %s", path, exc_info=error)
    return failure_reason(error)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LadderLens indexing process (started by the library)")
    parser.add_argument("inbox", type=int, help="file descriptor of the requests pipe")
    parser.add_argument("outbox", type=int, help="file descriptor of the answers pipe")
    parser.add_argument("--nice-level", type=int, default=None, help="run at this nice level (if lower)")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="indexing process: %(levelname)s %(message)s")
    if args.nice_level is not None:
        try:
            if os.getpriority(os.PRIO_PROCESS, 0) < args.nice_level:
                os.setpriority(os.PRIO_PROCESS, 0, args.nice_level)  # threads started later inherit it
        except OSError as exc:
            logger.debug("priority unchanged: %s", exc)
    started = time.perf_counter()
    inbox = Connection(args.inbox, readable=True, writable=False)
    outbox = Connection(args.outbox, readable=False, writable=True)
    try:
        return _serve(inbox, outbox, args.workers)
    except (BrokenPipeError, ConnectionResetError):  # the parent went away mid-answer
        return 0
    finally:
        logger.debug("indexing process ran %.1f s", time.perf_counter() - started)


if __name__ == "__main__":
    sys.exit(main())
