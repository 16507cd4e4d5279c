"""`binwatch ingest`: one worker in this process, or N worker processes on a shared subscription."""

from __future__ import annotations

import ctypes
import gc
import logging
import multiprocessing
import platform
import threading
from multiprocessing.process import BaseProcess
from typing import Annotated

import typer

from alerts.hook import AlertHook
from collection.hook import ThresholdHook
from core.errors import BinwatchError, ConfigError
from core.settings import Settings
from core.signals import stop_on_signals
from ingest.service import Ingestor
from security.mqtt_auth import INGEST_WORKERS_MAX

log = logging.getLogger(__name__)

# How often the supervisor looks for dead workers: a crash costs at most this much delay.
SUPERVISE_EVERY_S = 1.0
# A worker's exit code for errors a restart cannot fix (refused credentials, bad settings).
CANNOT_GO_ON = 1
# Allocations between the cyclic collector's passes over young objects (CPython's default is
# 700): about the containers of a few thousand messages (see settle_gc).
GC_YOUNG_OBJECTS = 50_000
# glibc's `mallopt` parameter, and the value it starts from (mallopt(3)).
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024


def ingest(
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=INGEST_WORKERS_MAX,
            help="worker processes sharing one MQTT shared subscription (accounts ingest-<n>)",
        ),
    ] = 1,
) -> None:
    """Subscribe to the bins' topics and store every valid reading in InfluxDB."""
    settings = Settings()
    try:
        numbers = worker_numbers(settings, workers)
    except ConfigError as exc:
        typer.echo(f"binwatch ingest: {exc}", err=True)
        raise typer.Exit(CANNOT_GO_ON) from None
    if numbers == range(1):
        raise typer.Exit(run_worker(settings, 0, shared=False))
    raise typer.Exit(supervise(settings, numbers))


def worker_numbers(settings: Settings, workers: int) -> range:
    """The numbers of this machine's workers: `workers` from `BINWATCH_INGEST_FIRST_WORKER`.
    Each number is an MQTT account and session (`ingest-<n>`), so machines sharing one broker
    take ranges that do not overlap; any range but the single worker 0 of a lone machine shares
    the subscription."""
    numbers = range(settings.ingest.first_worker, settings.ingest.first_worker + workers)
    if numbers.stop > INGEST_WORKERS_MAX:
        raise ConfigError(
            f"ingest workers {numbers.start}-{numbers.stop - 1}: the accounts end at "
            f"ingest-{INGEST_WORKERS_MAX - 1} (BINWATCH_INGEST_FIRST_WORKER + --workers "
            f"≤ {INGEST_WORKERS_MAX})"
        )
    return numbers


def supervise(settings: Settings, numbers: range) -> int:
    """Run a process per worker number on one shared subscription, restarting any that dies
    (its fixed client id gets its persistent session back, so what it held unacknowledged is
    redelivered)."""
    context = multiprocessing.get_context("spawn")

    def spawn(number: int) -> BaseProcess:
        process = context.Process(
            target=_worker_main, args=(settings, number), name=f"ingest-{number}"
        )
        process.start()
        return process

    processes = [spawn(number) for number in numbers]
    stop = threading.Event()
    stop_on_signals(stop)
    while not stop.wait(SUPERVISE_EVERY_S):
        for index, process in enumerate(processes):
            if process.is_alive() or stop.is_set():
                continue
            if process.exitcode == CANNOT_GO_ON:
                log.error("ingest worker %d cannot go on (see above); stopping all", numbers[index])
                stop.set()
            else:
                log.warning(
                    "ingest worker %d died (code %s); restarting it",
                    numbers[index],
                    process.exitcode,
                )
                processes[index] = spawn(numbers[index])
    for process in processes:
        if process.is_alive():
            process.terminate()  # SIGTERM: the worker flushes and acknowledges what it holds
    for process in processes:
        process.join()
    return max(abs(p.exitcode or 0) for p in processes)


def _worker_main(settings: Settings, index: int) -> None:
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s worker-{index} %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    raise SystemExit(run_worker(settings, index, shared=True))


def run_worker(settings: Settings, index: int, *, shared: bool) -> int:
    """Run one worker until SIGINT/SIGTERM; the exit code says whether it could.

    The worker runs in a thread of its own so that a stop is bounded whatever InfluxDB does
    (a frozen server holds a write for up to its timeout, and the final flush retries): after
    `ingest_stop_timeout_s` this returns without it. What it had not written is not
    acknowledged, so the broker keeps it in the worker's session and sends it after the
    restart; the writes are idempotent, so a batch written just before the exit costs nothing."""
    stop = threading.Event()
    stop_on_signals(stop)
    fix_mmap_threshold()
    hook = ThresholdHook(settings)  # the collection threshold rule, on every stored batch
    alerts = AlertHook(settings)  # the alert rules, on every stored reading, event and status
    errors: list[BaseException] = []
    worker = Ingestor(settings, worker=index, shared=shared, on_stored=hook, on_arrivals=alerts)
    settle_gc()

    def work() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    thread = threading.Thread(target=work, name=f"ingest-{index}", daemon=True)
    try:
        thread.start()
        # The main thread waits here, where the signal handlers run.
        while thread.is_alive() and not stop.wait(SUPERVISE_EVERY_S):
            pass
        thread.join(settings.ingest.stop_timeout_s)
        if thread.is_alive():
            log.warning(
                "ingest did not finish its batch within %.0f s of the stop (InfluxDB not"
                " answering?); leaving it unacknowledged for the broker to send again",
                settings.ingest.stop_timeout_s,
            )
            return 0
    finally:
        if not thread.is_alive():
            hook.close()
            alerts.close()
    for exc in errors:
        if isinstance(exc, BinwatchError | RuntimeError):
            log.error("ingest stopped: %s", exc)
            return CANNOT_GO_ON
        raise exc
    return 0


def settle_gc() -> None:
    """Keep CPython's cyclic garbage collector from re-reading what never becomes garbage.

    A worker holds up to a few batches of messages (thousands of small containers each) for a
    fraction of a second, and everything it imported for its whole life. With the default
    thresholds the collector runs every 700 allocations and its full passes walk all of that
    again and again (a flood's profile put over a quarter of the worker's samples on two lines
    that only allocate, where the passes run; a loop holding batches as the buffer does ran
    ~40 % faster with these settings, docs/performance.md). `gc.freeze()` moves what exists
    after start-up (modules, models, the registry's mappers) out of its reach, and a young
    generation of GC_YOUNG_OBJECTS lets most of a batch die by reference counting before a
    pass sees it.
    Cycles are still collected, only later; nothing ingest keeps per message is cyclic (an
    InfluxDB answer was, with the body it sent, until core/influx.py broke httpx's cycle)."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_OBJECTS, *gc.get_threshold()[1:])


def fix_mmap_threshold() -> bool:
    """Keep glibc from raising its mmap threshold as it goes (whether it did is returned).

    Every batch builds a few large buffers (its line-protocol body, ~1.8 MB at 5,000 points, and
    the HTTP client's copies). glibc serves blocks over its mmap threshold (128 KiB) with their
    own mapping, returned to the system when freed, but by default it raises that threshold to
    the size of each such block freed (up to 32 MiB), and the heap's trim threshold to twice
    that: from then on the buffers come from the heap, which keeps what they fragment. In the
    soak that showed as RSS rising in steps long after warm-up. Setting the threshold at all
    turns the adjustment off (mallopt(3)); elsewhere than glibc this does nothing."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False
