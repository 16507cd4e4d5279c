"""A lean QoS 1 publisher process for the benchmark: `python -m bench._publisher SPEC.json ...`.

Leaner than `simulator.publisher.run_simulation` (which builds and serialises a pydantic model per
reading): payloads come from `bench._payloads` templates, so it loads the broker and ingest harder
than the simulator could. It publishes `--count` messages as fast as the broker acknowledges them
(flood; with `--rate` too, paced at that rate), or `--rate` messages per second until `--seconds` have passed or it gets SIGTERM (steady).
A flood can carry `--hostile FILE`, messages from `bench._hostile` interleaved with the valid ones.
At the end it prints one JSON line: published, acknowledged, first publish and last PUBACK (epoch s).

Two paho costs are avoided on purpose (measured with py-spy, they halved the rate):
- paho's own in-flight limit (`max_inflight_messages_set(n)`, n > 0) walks every unacknowledged
  message on each PUBACK (`Client._update_inflight`), O(window) per message; the window is kept
  here instead and paho's limit set to 0 (none).
- a `loop_start` network thread fights the publishing thread for the GIL; one thread that publishes
  a window's worth and then runs `loop()` to read the PUBACKs is faster.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
import time
from itertools import islice
from typing import Any

import paho.mqtt.client as paho

from bench._hostile import interleave
from bench._payloads import PayloadSpec

# Unacknowledged messages: enough to keep a loopback broker busy at its ceiling (FACTS.md).
WINDOW = 1000
# How long one network-loop pass may wait for PUBACKs when the window is full.
LOOP_WAIT_S = 0.01
# No PUBACK at all for this long means the broker is gone.
ACK_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0


class Publisher:
    """One MQTT 5 connection driven from the calling thread."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        self.client.max_inflight_messages_set(0)  # see the module docstring
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.window = WINDOW
        self.connected = False
        self.published = 0
        self.acked = 0
        self.last_ack = 0.0
        self._progress_at = time.monotonic()
        self.client.connect(host, port, keepalive=60)
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while not self.connected:
            if time.monotonic() > deadline:
                raise SystemExit("publisher: no CONNACK")
            self.client.loop(0.1)

    def _on_connect(self, _c: paho.Client, _u: Any, _f: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            raise SystemExit(f"publisher: broker refused: {reason}")
        # MQTT 5 §3.3.4: never more in flight than the server's Receive Maximum.
        self.window = min(WINDOW, getattr(props, "ReceiveMaximum", 65535))
        self.connected = True

    def _on_publish(self, _c: paho.Client, _u: Any, _mid: int, _r: Any, _p: Any) -> None:
        self.acked += 1
        self.last_ack = time.time()

    def publish(self, topic: str, payload: bytes) -> None:
        while self.published - self.acked >= self.window:
            self._pump(LOOP_WAIT_S)
        self.client.publish(topic, payload, qos=1)
        self.published += 1

    def wait(self, seconds: float) -> None:
        """Read PUBACKs for `seconds` (the pacing sleep of steady mode)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self._pump(min(left, LOOP_WAIT_S))

    def drain(self) -> None:
        while self.acked < self.published:
            self._pump(LOOP_WAIT_S)

    def _pump(self, timeout: float) -> None:
        before = self.acked
        rc = self.client.loop(timeout)
        if rc != paho.MQTT_ERR_SUCCESS:
            raise SystemExit(f"publisher: connection lost ({paho.error_string(rc)})")
        now = time.monotonic()
        if self.acked != before:
            self._progress_at = now
        elif now - self._progress_at > ACK_TIMEOUT_S:
            raise SystemExit(f"publisher: no PUBACK for {ACK_TIMEOUT_S:.0f} s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, help="flood: publish this many, as fast as possible")
    parser.add_argument("--first", type=int, default=0, help="index of the first message")
    parser.add_argument(
        "--rate", type=float, help="steady (or a paced --count): messages per second"
    )
    parser.add_argument("--seconds", type=float, help="steady: for this long (or until SIGTERM)")
    parser.add_argument("--prefix", help="topic prefix, instead of the spec's")
    parser.add_argument("--client-id", default="bench-publisher")
    parser.add_argument("--hostile", help="flood: JSON file of hostile messages to interleave")
    args = parser.parse_args(argv)
    with open(args.spec) as file:
        spec = PayloadSpec.from_json(json.load(file))
    if args.prefix:
        spec = dataclasses.replace(spec, prefix=args.prefix)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    publisher = Publisher(args.host, args.port, args.client_id)
    if args.count is not None:
        # Serialised before the clock starts: the flood measures the broker and ingest, not us.
        messages = list(islice(spec.messages(args.first), args.count))
        if args.hostile:
            with open(args.hostile) as file:
                messages = list(interleave(messages, json.load(file), spec.prefix))
        print("ready", flush=True)
        first = time.time()
        began = time.monotonic()
        for topic, payload in messages:
            # With --rate too, paced: the peer's search of the highest steady rate.
            if (
                args.rate
                and (ahead := began + publisher.published / args.rate - time.monotonic()) > 0.002
            ):
                publisher.wait(ahead)
            publisher.publish(topic, payload)
    else:
        rate = args.rate or 1000.0
        deadline = time.monotonic() + (args.seconds if args.seconds else float("inf"))
        print("ready", flush=True)
        first = time.time()
        began = time.monotonic()
        for topic, payload in spec.messages(args.first):
            now = time.monotonic()
            if stop.is_set() or now >= deadline:
                break
            ahead = began + publisher.published / rate - now
            if ahead > 0.002:
                publisher.wait(ahead)
            publisher.publish(topic, payload)
    publisher.drain()
    publisher.close()
    print(
        json.dumps(
            {
                "published": publisher.published,
                "acked": publisher.acked,
                "t_first": first,
                "t_last_ack": publisher.last_ack,
                "cpu_s": time.process_time(),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
