"""Work spread over local worker processes or an existing Ray cluster: `eval`'s cells and the
images of `encode DIR`.

`run_tasks(fn, calls, ...)` runs `fn(*call)` for every call as a Ray task and yields the results as
they finish. Interrupts stay the caller's: while Ray waits, SIGINT/SIGTERM only set a flag, and
between waits the caller's own handler is put back and run (Ray's C++ wait runs Python signal
handlers itself and turns any exception but KeyboardInterrupt into a SystemError, and `ray.init`
installs its own SIGTERM handler, a stack dump). A task that fails with a `LatentfitError` stops
the run with that error's one line, not Ray's traceback. Inputs and outputs travel by value except
file paths, which must be readable where the tasks run (a shared file system on a cluster).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Callable, Iterable, Iterator

from .errors import LatentfitError


def ray_installed() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def start_ray(address: str | None, workers: int) -> None:
    """Connect to the Ray cluster at `address`, or start a local instance of `workers` CPUs whose
    workers run at normal priority: Ray's default niceness of 15 let a local eval sit for minutes
    without finishing a cell while other processes used the cores (`RAY_worker_niceness` set by
    the user still wins)."""
    import logging

    import ray

    options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address:
        ray.init(address=address, **options)
    else:
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(num_cpus=workers, object_store_memory=256 * 1024 * 1024, **options)


def _signal_handlers() -> dict:
    """This process's Python-level SIGINT/SIGTERM handlers (none outside the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signal_handlers(handlers: dict) -> None:
    for sig, handler in handlers.items():
        if handler is not None:  # None: installed outside Python, nothing to restore
            signal.signal(sig, handler)


def _one_line(fn: Callable, args: tuple):
    """`fn(*args)` in a Ray worker, a `LatentfitError` returned as a value (Ray would wrap it); the
    worker's malloc tuned as the command line's own process is (`latentfit.allocator`)."""
    from .allocator import tune_allocator

    tune_allocator()
    try:
        return False, fn(*args)
    except LatentfitError as exc:
        return True, str(exc)


def run_tasks(fn: Callable[..., Any], calls: Iterable[tuple], workers: int = 1, address: str | None = None,
              gpus_per_task: float = 0.0) -> Iterator[Any]:
    """`fn(*call)` for each call as a Ray task (one CPU and `gpus_per_task` GPUs each) on a local
    instance of `workers` CPUs or the cluster at `address`; the results in the order they finish.
    On a task's `LatentfitError` the tasks not yet finished are cancelled and that error is raised."""
    import ray

    started_here = not ray.is_initialized()
    handlers = _signal_handlers()
    received: list[int] = []
    if started_here:
        start_ray(address, workers)

    def defer_signals() -> None:
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, lambda signum, frame: received.append(signum))

    defer_signals()
    task = ray.remote(num_cpus=1, num_gpus=gpus_per_task)(_one_line)
    pending: dict = {}
    try:
        pending = {task.remote(fn, tuple(call)): None for call in calls}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)
            if received:
                _restore_signal_handlers(handlers)
                signal.raise_signal(received.pop(0))  # the caller's handler, e.g. the CLI's clean interrupt
                defer_signals()  # that handler chose to carry on
            if ready:
                pending.pop(ready[0])
                failed, value = ray.get(ready[0])
                if failed:
                    raise LatentfitError(value)
                yield value
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        _restore_signal_handlers(handlers)
        if started_here:
            ray.shutdown()
