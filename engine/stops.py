"""SIGTERM and SIGINT: how a run stops, one mechanism for the process and its data workers.

Cluster schedulers, docker, systemd and a terminal's Ctrl-C signal the whole process group
(or cgroup), so the DataLoader workers get the signal at the same moment as the training
process. Here only the training process decides what a stop does:

* :class:`StopOnSignal` (the training process): a signal sets ``signal``; the loop saves a
  checkpoint at the next iteration boundary. Inside :meth:`StopOnSignal.interrupting` (an
  evaluation of weights that are already saved, the set-up) the signal raises
  :class:`StopRequested` at once instead.
* :class:`StopSafeLoader` (every DataLoader the project builds): its workers ignore SIGINT and
  every SIGTERM but their parent's (the DataLoader's own shutdown), so they keep serving
  batches until the training process shuts them down. Workers start with both signals
  blocked, so one that arrives while they fork is not lost in between: the workers drop it
  and the training process handles it once they are up.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from torch.utils.data import DataLoader, Dataset

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_CAN_MASK = hasattr(signal, "pthread_sigmask")  # POSIX
_CAN_WAIT = hasattr(signal, "sigwaitinfo")  # Linux, not macOS


class StopRequested(KeyboardInterrupt):
    """Raised by the signal handler inside :meth:`StopOnSignal.interrupting`."""


class StopOnSignal:
    """Within the block, SIGTERM and SIGINT set ``signal`` instead of ending the process.

    Handlers can only be installed from the main thread; elsewhere the block changes nothing.
    """

    def __init__(self) -> None:
        self.signal: str | None = None  # the first signal's name, e.g. "SIGTERM"
        self._previous: dict[int, Any] = {}
        self._interrupt = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = self.signal or signal.Signals(signum).name
        if self._interrupt:
            self._interrupt = False  # once: the unwinding itself is not interrupted
            raise StopRequested(self.signal)

    @contextmanager
    def interrupting(self, enabled: bool = True) -> Iterator[None]:
        """Within, a stop (also one already received) raises :class:`StopRequested` at once.

        For work that can be dropped and redone, such as scoring weights that are in a
        checkpoint; ``enabled=False`` (e.g. under torchrun, where the ranks' collectives
        must pair up) leaves the stop to the next iteration boundary.
        """
        if not enabled or not self._previous:
            yield
            return
        self._interrupt = True
        try:
            if self.signal is not None:  # checked after arming: no signal slips between
                self._interrupt = False
                raise StopRequested(self.signal)
            yield
        finally:
            self._interrupt = False

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


class StopSafeLoader(DataLoader):
    """A torch DataLoader whose worker processes leave SIGTERM and SIGINT to this process.

    Takes DataLoader's arguments (all but ``dataset`` by keyword); a ``worker_init_fn`` runs
    after the workers' signal set-up.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        worker_init_fn: Callable[[int], None] | None = None,
        **kwargs: Any,
    ) -> None:
        init = functools.partial(leave_stops_to_the_parent, parent=os.getpid(), then=worker_init_fn)
        super().__init__(dataset, worker_init_fn=init, **kwargs)

    def __iter__(self) -> Any:
        with _stop_signals_held():  # the workers fork here
            return super().__iter__()


def leave_stops_to_the_parent(
    worker_id: int, parent: int, then: Callable[[int], None] | None = None
) -> None:
    """DataLoader ``worker_init_fn``: ignore SIGINT, and SIGTERM unless ``parent`` sends it.

    The DataLoader's shutdown terminates a worker that does not exit in time with SIGTERM,
    which must keep working (torch's own worker handler exits on its parent's SIGTERM); a
    SIGTERM from anyone else (a scheduler signalling the whole group) is dropped. Both
    signals arrive blocked (see :class:`StopSafeLoader`); SIGTERM stays blocked in every
    thread of the worker, for :func:`_obey_only_the_parent` to take.

    Args:
        worker_id: the DataLoader's worker number.
        parent: the pid of the process that iterates the DataLoader.
        then: the loader's own ``worker_init_fn`` (e.g. seeding), run afterwards.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a pending one is dropped
    if _CAN_WAIT:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        threading.Thread(target=_obey_only_the_parent, args=(parent,), daemon=True).start()
    else:  # no sender to tell apart: ignore SIGTERM altogether
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _CAN_MASK:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT} if _CAN_WAIT else STOP_SIGNALS)
    if then is not None:
        then(worker_id)


def _obey_only_the_parent(parent: int) -> None:
    """Wait for SIGTERM (blocked in every thread of the worker); exit on the parent's."""
    while True:
        info = signal.sigwaitinfo({signal.SIGTERM})
        if info.si_pid == parent:
            os._exit(0)  # what torch's worker handler does on its parent's SIGTERM


@contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Hold SIGTERM and SIGINT while DataLoader workers are forked, then deliver them.

    Blocked in this thread, the signals are blocked in the forked workers too until their
    init has set them up. This process's handlers are swapped for a recorder meanwhile (a
    signal can still reach another thread): a handler that raises must not leave a
    half-started DataLoader iterator behind. The recorded signals are raised again after.
    """
    held: list[int] = []
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, lambda s, _: held.append(s)) for sig in STOP_SIGNALS}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS) if _CAN_MASK else None
    try:
        yield
    finally:
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(held):
            signal.raise_signal(sig)
