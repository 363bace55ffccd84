#!/usr/bin/env python3
"""An e-bike that publishes its readings over MQTT for starling-ingest's bridge.

Topic: starling/<pipeline>/<device_id>/events (services/ingest/README.md,
"MQTT"). Payload: a JSON array of readings; each message is one saga. QoS 1
so mosquitto acknowledges every message, and no retain flag: a retained
message would be ingested again after every bridge reconnect.

Debian 12's python3-paho-mqtt (1.6.x API: mqtt.Client(client_id, clean_session)).

  examples/devices/mqtt_publisher.py --host 127.0.0.1 --port 1883 --device bike-0007 --messages 4
"""

import argparse
import json
import os
import sys
import uuid
from datetime import datetime, timezone

import paho.mqtt.client as mqtt


def reading(device, ride, i):
    """One ecowheels reading that passes the pipeline's rules. No device_id:
    the bridge takes it from the topic."""
    return {
        # An id per reading also makes every message's payload distinct: the
        # bridge derives the saga id from topic + payload.
        "event_id": str(uuid.uuid4()),
        "ride_id": ride,
        "event_time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "lat": round(38.7223 + i * 0.0001, 6),
        "lon": round(-9.1393 + i * 0.0001, 6),
        "speed_kmh": 18.0 + i % 7,
        "battery_pct": max(5, 90 - i),
        "temperature_c": 17.5,
        "odometer_km": 1200.0 + i * 0.01,
        "status": "RIDING",
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default=os.environ.get("MQTT_HOST", "localhost"))
    p.add_argument("--port", type=int, default=int(os.environ.get("MQTT_PORT", "1883")))
    p.add_argument("--pipeline", default="ecowheels")
    p.add_argument("--device", default="bike-0001", help="device id; ecowheels wants bike-NNNN")
    p.add_argument("--messages", type=int, default=3, help="messages to publish, one saga each")
    p.add_argument("--events", type=int, default=5, help="readings per message")
    p.add_argument("--username", default=os.environ.get("MQTT_USERNAME"))
    p.add_argument("--password", default=os.environ.get("MQTT_PASSWORD"))
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each PUBACK")
    args = p.parse_args()

    topic = f"starling/{args.pipeline}/{args.device}/events"
    client = mqtt.Client(client_id=f"{args.device}-{uuid.uuid4().hex[:6]}", clean_session=True,
                         protocol=mqtt.MQTTv311)
    if args.username:
        client.username_pw_set(args.username, args.password)
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()  # network thread: sends, receives PUBACKs, reconnects
    try:
        ride = f"ride-{uuid.uuid4().hex[:8]}"
        for m in range(args.messages):
            readings = [reading(args.device, ride, m * args.events + i) for i in range(args.events)]
            info = client.publish(topic, json.dumps(readings), qos=1, retain=False)
            # With QoS 1, published means mosquitto has it; the bridge takes it
            # from there and acknowledges it to mosquitto once Kafka persisted it.
            info.wait_for_publish(timeout=args.timeout)
            if not info.is_published():
                print(f"message {m}: no PUBACK within {args.timeout} s (rc {info.rc})", file=sys.stderr)
                sys.exit(1)
            print(json.dumps({"message": m, "topic": topic, "mid": info.mid,
                              "event_ids": [r["event_id"] for r in readings]}), flush=True)
    finally:
        client.disconnect()
        client.loop_stop()


if __name__ == "__main__":
    main()
