"""Where an ingest worker spends its time: py-spy's raw (collapsed) stacks, sorted into buckets.

`py-spy record --format raw` writes one line per distinct stack: `frame;frame;…;leaf count`,
outermost first, each frame `function (file:line)`. A sample goes to the first bucket, in the
order below, that matches any frame of its stack: `json.loads` called from `decode` counts as
JSON, paho's socket write called from `Client.ack` counts as acks, not as paho's loop. Only samples of running threads are recorded (no `--idle`), so the
shares are of CPU time, which is what a GIL-bound worker is short of.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# (bucket, regex on a frame), in priority order.
BUCKETS: tuple[tuple[str, str], ...] = (
    ("rule hooks (alerts/hook, collection/hook, their SQL)", r"alerts/|collection/"),
    ("json decode", r"\(json/|json\.loads|JSONDecoder"),
    ("timestamp parsing (contract.parse_ts)", r"parse_ts|epoch_ms"),
    ("pydantic validation (Reading.model_validate)", r"model_validate|pydantic"),
    ("line building (lineprotocol)", r"lineprotocol\.py"),
    ("topic parsing (Topics.parse_bin_topic)", r"parse_bin_topic"),
    ("decode, rest (ingest/decode.py)", r"ingest/decode\.py"),
    ("MQTT acks (client.ack → PUBACK)", r"Client\.ack \(|_send_puback"),
    ("InfluxDB write (httpx + influxd wait)", r"httpx|httpcore|h11|influx\.py"),
    ("batch assembly + bookkeeping (service._store)", r"_store|_account|_take_batch|_dead_letters"),
    ("metrics endpoint (the bench polls /metrics)", r"prometheus_client|socketserver|wsgiref"),
    ("on_message wrapper + buffer append (service)", r"_on_message"),
    ("paho receive loop (read, parse PUBLISH, dispatch)", r"paho"),
    ("locks / thread waits", r"threading\.py|Condition"),
    ("logging", r"logging/"),
)

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
# Frames name files by absolute path: shown relative to site-packages or to this checkout.
_PREFIX = re.compile(r"/.*/site-packages/|" + re.escape(f"{Path(__file__).resolve().parents[1]}/"))


def _short(frame: str) -> str:
    return _PREFIX.sub("", frame)


@dataclass(frozen=True, slots=True)
class Breakdown:
    total: int
    buckets: list[tuple[str, int]]
    threads: list[tuple[str, int]]
    top_leaves: list[tuple[str, int]]

    def lines(self) -> list[str]:
        if not self.total:
            return ["  (no samples)"]
        out = [f"  {self.total} samples of running threads"]
        out += [f"  {100 * n / self.total:5.1f} %  {name}" for name, n in self.buckets]
        out.append("  by thread:")
        out += [f"  {100 * n / self.total:5.1f} %  {name}" for name, n in self.threads]
        out.append("  hottest leaf frames:")
        out += [f"  {100 * n / self.total:5.1f} %  {name}" for name, n in self.top_leaves]
        return out


def _thread_of(frames: list[str]) -> str:
    """py-spy's `--threads` root frame names the thread; the stack says what it is for."""
    joined = ";".join(frames)
    if "paho-mqtt-client" in joined or "_thread_main" in joined:
        return "paho network thread (receive, decode, buffer)"
    if "Ingestor.run (" in joined:
        return "writer thread (batch, write, ack)"
    if "prometheus_client" in joined or "serve_forever" in joined:
        return "metrics HTTP thread"
    return "other"


def analyse(path: Path, *, top: int = 12) -> Breakdown:
    buckets: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    patterns = [(name, re.compile(rx)) for name, rx in BUCKETS]
    for raw in path.read_text(errors="replace").splitlines():
        match = _LINE.match(raw.strip())
        if not match:
            continue
        count = int(match["count"])
        every = match["stack"].split(";")
        frames = [f for f in every if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        threads[_thread_of(every)] += count
        leaves[_short(frames[-1])] += count
        bucket = next(
            (name for name, rx in patterns if any(rx.search(frame) for frame in frames)), "other"
        )
        buckets[bucket] += count
    return Breakdown(total, buckets.most_common(), threads.most_common(), leaves.most_common(top))
