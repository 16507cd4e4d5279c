"""The peer figure (issue 18): binwatch against Node-RED, the do-it-yourself MQTT → InfluxDB path,
measured in one run with the same broker, database, publisher and payloads.

For each pipeline (binwatch's ingest with 1 worker, and each Node-RED flow of `bench._nodered`):
- the loss when flooded (the publisher as fast as the broker acknowledges), measured first: the
  rate it then stores is where the search starts;
- the highest steady rate it holds: a paced stream of `step_s` seconds is *held* when every
  reading is stored (zero loss), the last one within `lag_s` of the last publish (it kept up:
  with binwatch's broker limits nothing is dropped by the broker, so a pipeline that falls
  behind shows as lag, not loss; a pipeline that stores C/s holds a rate R only if
  R <= C × (1 + lag_s / step_s): within 10 % of what it sustains, 20 % with --quick), and the
  publisher really reached 95 % of the rate. The search starts at 80 % of the flood's stored
  rate, steps ×1.25 up while held (÷2 down while nothing has held), then bisects between the best
  held and the lowest failed rate, in at most `steps` streams; a search in which no stream failed,
  or the lowest failed only because the publisher fell short, gives a lower bound (`bounded`
  false);
- the loss through a SIGKILL: a paced stream at 80 % of its held rate, the process killed once
  30 % is stored, restarted at once (same client id, persistent session), the stream finished.
Each pipeline has its own topic prefix and database; readings of a pipeline never repeat (each
stream starts after the last one's readings), so counting a stream's time range counts it exactly.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import Callable
from typing import Any, Protocol

from bench._payloads import PayloadSpec

ACHIEVED_SHARE = 0.95
UP, DOWN = 1.25, 0.5
SEARCH_FROM = 0.8  # of the flood's stored rate
FAULT_RATE_SHARE = 0.8
FAULT_KILL_AT = 0.3
POLL_S = 0.2
MIN_RATE = 500.0  # where the search starts when the flood stored next to nothing


@dataclasses.dataclass(frozen=True)
class Plan:
    step_s: float
    steps: int
    resolution: float  # bisection stops when failed / held <= 1 + this
    lag_s: float  # a held stream's last reading is stored this soon after its last publish
    flood: int
    fault: int
    quiet_s: float  # no new point for this long after the last publish: the rest is lost
    limit_s: float  # and never wait longer than this after it


FULL = Plan(
    step_s=15,
    steps=8,
    resolution=0.05,
    lag_s=1.5,
    flood=200_000,
    fault=100_000,
    quiet_s=10,
    limit_s=300,  # a flood of 200,000 through the per-message flow drains at ~2,000/s
)
QUICK = Plan(
    step_s=5,
    steps=6,  # binwatch holds paced up to ~2× the rate it stores a flood at: room to find it
    resolution=0.1,
    lag_s=1.0,
    flood=30_000,
    fault=20_000,
    quiet_s=5,
    limit_s=60,
)


class Pipeline(Protocol):
    """A subscriber under measurement: started means subscribed and storing."""

    name: str
    prefix: str

    def start(self) -> None: ...
    def count(self, start_ms: int, end_ms: int) -> int: ...
    def cpu_seconds(self) -> float: ...
    def kill(self) -> None: ...
    def stop(self) -> None: ...
    def problems(self) -> list[str]: ...


@dataclasses.dataclass
class Rig:
    """What the measurements need from the bench."""

    spec: PayloadSpec
    # (prefix, first, count, rate or None for a flood) → the started publisher helper
    publish: Callable[[str, int, int, float | None], subprocess.Popen[str]]
    finish: Callable[[subprocess.Popen[str]], dict[str, Any]]


class Stream:
    """Readings `first` … `first + count - 1` of one pipeline and their time range."""

    def __init__(self, rig: Rig, pipe: Pipeline, first: int, count: int) -> None:
        self.rig, self.pipe, self.first, self.count = rig, pipe, first, count
        bins = len(rig.spec.bins)
        self.start_ms = rig.spec.start_ms + (first // bins) * rig.spec.interval_ms
        self.end_ms = rig.spec.end_ms(first + count)
        # The next stream starts at a whole round, after every reading of this one.
        self.after = -(-(first + count) // bins) * bins

    def stored(self) -> int:
        return self.pipe.count(self.start_ms, self.end_ms)

    def settle(self, plan: Plan, published: int) -> tuple[int, float]:
        """(stored, when the last one was seen): waits until all are stored, or none came for
        `quiet_s`, or `limit_s` passed."""
        began = last_change = time.monotonic()
        stored, seen_at = self.stored(), time.time()
        while stored < published:
            now = time.monotonic()
            if now - last_change > plan.quiet_s or now - began > plan.limit_s:
                break
            time.sleep(POLL_S)
            now_stored = self.stored()
            if now_stored != stored:
                stored, seen_at, last_change = now_stored, time.time(), time.monotonic()
        return stored, seen_at


def paced(rig: Rig, pipe: Pipeline, first: int, plan: Plan, rate: float) -> dict[str, Any]:
    """One paced stream of `plan.step_s` seconds at `rate`, judged held or not."""
    stream = Stream(rig, pipe, first, max(1, round(rate * plan.step_s)))
    published = rig.finish(rig.publish(pipe.prefix, first, stream.count, rate))
    stored, seen_at = stream.settle(plan, published["published"])
    achieved = published["published"] / max(1e-9, published["t_last_ack"] - published["t_first"])
    lag = seen_at - published["t_last_ack"]
    loss = published["published"] - stored
    why = [
        reason
        for reason, failed in (
            ("loss", loss > 0),
            ("lag", lag > plan.lag_s),
            ("publisher short of the rate", achieved < ACHIEVED_SHARE * rate),
        )
        if failed
    ]
    return {
        "rate": rate,
        "achieved": achieved,
        "published": published["published"],
        "stored": stored,
        "loss": loss,
        "lag_s": lag,
        "held": not why,
        "why": why,
        "loadavg_1min": os.getloadavg()[0],
        "next": stream.after,
    }


def search(
    rig: Rig, pipe: Pipeline, first: int, plan: Plan, rate: float, say: Callable[[str], None]
) -> dict[str, Any]:
    """The highest held rate, from `rate` stepping up and down, then bisecting."""
    steps: list[dict[str, Any]] = []
    held: float | None = None
    failed: float | None = None
    best: dict[str, Any] | None = None
    for _ in range(plan.steps):
        step = paced(rig, pipe, first, plan, rate)
        first = step["next"]
        steps.append(step)
        say(
            f"      {rate:8,.0f}/s: {'held  ' if step['held'] else 'FAILED'} (achieved"
            f" {step['achieved']:,.0f}/s, loss {step['loss']:,} of {step['published']:,}, lag"
            f" {step['lag_s']:.1f} s, load {step['loadavg_1min']:.1f})"
            + (f": {', '.join(step['why'])}" if step["why"] else "")
        )
        if step["held"]:
            held = max(held or 0.0, rate)
            best = step if held == rate else best
        else:
            failed = min(failed or float("inf"), rate)
        if failed is None:
            rate *= UP
        elif held is None:
            rate *= DOWN
        elif failed / held <= 1 + plan.resolution:
            break
        else:
            rate = (held + failed) / 2
    limit = min((s for s in steps if not s["held"]), key=lambda s: s["rate"], default=None)
    return {
        # What the publisher achieved in the best held stream (at least 95 % of its rate).
        "zero_loss_rate": best["achieved"] if best else 0.0,
        "first_failed_rate": failed,
        # A search is bounded by a stream the pipeline failed, not one the publisher fell short in.
        "bounded": limit is not None and limit["why"] != ["publisher short of the rate"],
        "steps": steps,
        "next": first,
    }


def flood(rig: Rig, pipe: Pipeline, first: int, plan: Plan) -> dict[str, Any]:
    stream = Stream(rig, pipe, first, plan.flood)
    cpu = pipe.cpu_seconds()
    published = rig.finish(rig.publish(pipe.prefix, first, stream.count, None))
    stored, seen_at = stream.settle(plan, published["published"])
    cpu = pipe.cpu_seconds() - cpu
    return {
        # The pipeline's CPU (user + system, its process tree) per reading stored, flood to drain.
        "cpu_us_per_reading": 1e6 * cpu / max(1, stored),
        "published": published["published"],
        "stored": stored,
        "loss": published["published"] - stored,
        "rate": stored / max(1e-9, seen_at - published["t_first"]),
        "publisher_rate": published["published"]
        / max(1e-9, published["t_last_ack"] - published["t_first"]),
        "loadavg_1min": os.getloadavg()[0],
        "next": stream.after,
    }


def fault(rig: Rig, pipe: Pipeline, first: int, plan: Plan, rate: float) -> dict[str, Any]:
    """SIGKILL mid-stream, restart at once, finish the stream: what is missing is lost."""
    stream = Stream(rig, pipe, first, plan.fault)
    publisher = rig.publish(pipe.prefix, first, stream.count, rate)
    try:
        deadline = time.monotonic() + plan.fault / rate + plan.limit_s
        while (at_kill := stream.stored()) < FAULT_KILL_AT * stream.count:
            if time.monotonic() > deadline or publisher.poll() is not None:
                break
            time.sleep(POLL_S / 4)
        mid_stream = publisher.poll() is None and at_kill < stream.count
        pipe.kill()
        killed_at = time.monotonic()
        pipe.start()
        restart_s = time.monotonic() - killed_at
    except BaseException:  # Ctrl-C, SIGTERM, a failed restart: the publisher goes too
        publisher.kill()
        publisher.wait()
        raise
    published = rig.finish(publisher)
    stored, _ = stream.settle(plan, published["published"])
    return {
        "rate": rate,
        "published": published["published"],
        "stored_at_kill": at_kill,
        "mid_stream": mid_stream,  # the kill came while the publisher still published
        "restart_s": restart_s,  # until storing again: started, and a marker behind the backlog
        "stored": stored,
        "loss": published["published"] - stored,
        "loadavg_1min": os.getloadavg()[0],
        "next": stream.after,
    }


def measure(rig: Rig, pipe: Pipeline, plan: Plan, say: Callable[[str], None]) -> dict[str, Any]:
    """Flood, search and fault of one pipeline, started and stopped here."""
    say(f"  peer: {pipe.name}")
    began = time.monotonic()
    try:
        pipe.start()
        flooded = flood(rig, pipe, 0, plan)
        say(
            f"    flood: loss {flooded['loss']:,} of {flooded['published']:,}"
            f" ({flooded['rate']:,.0f}/s stored, publisher {flooded['publisher_rate']:,.0f}/s;"
            f" {flooded['cpu_us_per_reading']:.0f} µs of CPU per reading)"
        )
        start = max(MIN_RATE, SEARCH_FROM * flooded["rate"])
        found = search(rig, pipe, flooded["next"], plan, start, say)
        held = found["zero_loss_rate"]
        say(f"    zero-loss rate {held:,.0f}/s ({bound_text(found)})")
        killed = fault(rig, pipe, found["next"], plan, FAULT_RATE_SHARE * (held or start * DOWN))
        say(
            f"    SIGKILL at {killed['stored_at_kill']:,} stored"
            f"{'' if killed['mid_stream'] else ' (AFTER the stream: not mid-stream)'}, storing"
            f" again {killed['restart_s']:.1f} s later: loss {killed['loss']:,} of"
            f" {killed['published']:,} at {killed['rate']:,.0f}/s"
        )
        problems = pipe.problems()
    finally:
        pipe.stop()
    return {
        "name": pipe.name,
        "zero_loss_rate": held,
        "search": found,
        "flood": flooded,
        "fault": killed,
        "seconds": time.monotonic() - began,
        "log_problems": problems,
    }


def bound_text(found: dict[str, Any]) -> str:
    failed = found["first_failed_rate"]
    if found["bounded"]:
        return f"first failed at {failed:,.0f}/s"
    if failed:
        return f"a lower bound: the publisher fell short at {failed:,.0f}/s"
    return "a lower bound: no stream failed"


def summarise(binwatch: dict[str, Any], peers: list[dict[str, Any]]) -> dict[str, Any]:
    best = max(peers, key=lambda p: p["zero_loss_rate"])
    ratio = (
        binwatch["zero_loss_rate"] / best["zero_loss_rate"]
        if best["zero_loss_rate"]
        else float("nan")
    )
    loads = [
        s["loadavg_1min"]
        for r in (binwatch, *peers)
        for s in (*r["search"]["steps"], r["flood"], r["fault"])
    ]
    return {
        "binwatch_zero_loss_rate": binwatch["zero_loss_rate"],
        "best_peer": best["name"],
        "best_peer_zero_loss_rate": best["zero_loss_rate"],
        "best_peer_bounded": best["search"]["bounded"],
        "ratio": ratio,
        # False when a search never failed: its zero-loss rate is a lower bound only.
        "bounded": all(r["search"]["bounded"] for r in (binwatch, *peers)),
        "loadavg_1min_during": [min(loads), max(loads)],
    }
