"""Signals during a command's lanes: SIGTERM and SIGHUP stop it, a signal it was started ignoring stays ignored."""

from __future__ import annotations

import os
import signal

import pytest
from numa_ops import stopping


@pytest.fixture
def restore_signals():
    saved = {sig: signal.getsignal(sig) for sig in stopping.SIGNALS}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("sig", list(stopping.SIGNALS), ids=lambda s: signal.Signals(s).name)
def test_a_signal_stops_the_lanes_and_says_which(restore_signals, sig):
    signal.signal(sig, signal.SIG_DFL)
    with pytest.raises(stopping.Stopped) as stopped, stopping.raise_on_signals():
        os.kill(os.getpid(), sig)
    assert stopped.value.signum == sig
    assert stopped.value.reason == f"killed: the command was stopped ({signal.Signals(sig).name})"
    assert signal.getsignal(sig) == signal.SIG_DFL  # the handler before it, back


def test_a_signal_ignored_at_start_stays_ignored(restore_signals):
    """``nohup numa-lab run ...``: logging out (SIGHUP) must not stop an overnight sweep."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with stopping.raise_on_signals():
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGHUP)  # ignored: nothing is raised
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_IGN, signal.SIG_DFL)  # SIGTERM still stops it
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN


def test_ctrl_c_is_a_stop_by_sigint():
    assert stopping.of(KeyboardInterrupt()).signum == signal.SIGINT
