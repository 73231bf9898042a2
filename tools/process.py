"""What the throwaway servers share about their processes."""

from __future__ import annotations

import signal
import subprocess


def end(proc: subprocess.Popen | None, sig: signal.Signals, timeout: float) -> None:
    """Ask ``proc`` to stop with ``sig``; SIGKILL if it has not exited within ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
