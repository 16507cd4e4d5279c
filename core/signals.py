"""How every long-running command stops: SIGINT or SIGTERM sets an event its loop watches, so it
ends its work cleanly (ingest flushes and acknowledges, the simulator publishes its bins offline,
the collector and the alerter finish their tick)."""

from __future__ import annotations

import signal
import threading
from types import FrameType


def stop_on_signals(stop: threading.Event, *, second_interrupts: bool = False) -> None:
    """Set `stop` on SIGINT/SIGTERM. `second_interrupts`: a second signal raises
    KeyboardInterrupt, for a command whose clean end may wait on a broker that no longer
    answers (the simulator)."""

    def handle(_signum: int, _frame: FrameType | None) -> None:
        if second_interrupts and stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handle)
