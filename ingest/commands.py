"""`binwatch ingest`: one worker in this process, or N worker processes on a shared subscription."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from typing import Annotated

import typer

from binwatch.errors import BinwatchError
from binwatch.settings import Settings
from ingest.service import Ingestor

log = logging.getLogger(__name__)


def ingest(
    workers: Annotated[
        int,
        typer.Option(min=1, max=32, help="worker processes sharing one MQTT shared subscription"),
    ] = 1,
) -> None:
    """Subscribe to the bins' topics and store every valid reading in InfluxDB."""
    settings = Settings()
    if workers == 1:
        raise typer.Exit(run_worker(settings, 0, shared=False))
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker_main, args=(settings, index), name=f"ingest-{index}")
        for index in range(workers)
    ]
    for process in processes:
        process.start()
    stop = threading.Event()
    _stop_on_signals(stop)
    stop.wait()
    for process in processes:
        if process.pid is not None and process.is_alive():
            process.terminate()  # SIGTERM: the worker flushes and acknowledges what it holds
    for process in processes:
        process.join()
    raise typer.Exit(max((p.exitcode or 0) for p in processes))


def _worker_main(settings: Settings, index: int) -> None:
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s worker-{index} %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    raise SystemExit(run_worker(settings, index, shared=True))


def run_worker(settings: Settings, index: int, *, shared: bool) -> int:
    """Run one worker until SIGINT/SIGTERM; the exit code says whether it could."""
    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        Ingestor(settings, worker=index, shared=shared).run(stop)
    except (BinwatchError, RuntimeError) as exc:
        log.error("ingest stopped: %s", exc)
        return 1
    return 0


def _stop_on_signals(stop: threading.Event) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
