"""A plain QoS 1 subscriber process for the broker ceiling: `python -m bench._subscriber ...`.

It does nothing with a message but count it, and lets paho acknowledge at once (no manual ack).
MQTT 5 with Receive Maximum 65535, as FACTS.md says a fast consumer needs (a stock 3.1.1
subscriber gets 20 in flight). Prints `ready` once subscribed, then one JSON line when it has
`--count` messages or `--timeout` seconds passed: count, first and last arrival (epoch s).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)

    state = {"count": 0, "first": 0.0, "last": 0.0}
    done = threading.Event()
    subscribed = threading.Event()

    def on_connect(client: paho.Client, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
        client.subscribe(args.topic, qos=1)

    def on_subscribe(_c: paho.Client, _u: Any, _m: int, _r: Any, _p: Any) -> None:
        subscribed.set()

    def on_message(_c: paho.Client, _u: Any, _message: paho.MQTTMessage) -> None:
        now = time.time()
        if not state["count"]:
            state["first"] = now
        state["count"] += 1
        state["last"] = now
        if state["count"] >= args.count:
            done.set()

    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id="bench-subscriber", protocol=paho.MQTTv5
    )
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    properties = Properties(PacketTypes.CONNECT)
    properties.ReceiveMaximum = 65535
    client.connect(args.host, args.port, keepalive=60, clean_start=True, properties=properties)
    client.loop_start()
    if not subscribed.wait(10):
        print("subscriber: no SUBACK within 10 s", file=sys.stderr)
        return 1
    print("ready", flush=True)
    done.wait(args.timeout)
    client.disconnect()
    client.loop_stop()
    print(
        json.dumps(
            {
                "count": state["count"],
                "t_first": state["first"],
                "t_last": state["last"],
                "cpu_s": time.process_time(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
