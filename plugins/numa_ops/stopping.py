"""The command line's lanes stopped by a signal: SIGTERM, SIGHUP or Ctrl-C end every lane's worker group and
record the runs left as killed (the run folder then resumes with ``run --folder NAME``). Workers run in sessions
of their own, so without this they would outlive the command and keep the GPU."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """The command was stopped by ``signum`` (Ctrl-C's KeyboardInterrupt is caught alike)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def reason(self) -> str:
        """The error a killed run's record keeps."""
        return f"killed: the command was stopped ({signal.Signals(self.signum).name})"


def of(exc: KeyboardInterrupt) -> Stopped:
    """``exc`` as :class:`Stopped` (a plain KeyboardInterrupt is Ctrl-C: SIGINT)."""
    return exc if isinstance(exc, Stopped) else Stopped(signal.SIGINT)


@contextmanager
def raise_on_signals() -> Iterator[None]:
    """Within: SIGTERM and SIGHUP raise :class:`Stopped` in the main thread. A signal the command was started
    ignoring stays ignored (``nohup``: logging out does not stop an overnight sweep). Off the main thread nothing
    changes (only it may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Stopped(signum)

    old = {sig: signal.signal(sig, handler) for sig in SIGNALS if signal.getsignal(sig) != signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
