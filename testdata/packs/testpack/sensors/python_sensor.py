"""Fixture sensor: one event per rule in ATTUNE_SENSOR_TRIGGERS, then idle until SIGTERM."""
import json
import os
import signal
import sys
import time
import urllib.request


def post_event(api, token, body):
    req = urllib.request.Request(
        api + "/api/v1/events",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + token},
    )
    # A non-2xx answer raises HTTPError, so the sensor exits non-zero.
    with urllib.request.urlopen(req, timeout=10) as resp:
        if resp.status != 201:
            sys.exit("event not accepted: HTTP %d" % resp.status)


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    api = os.environ["ATTUNE_API_URL"].rstrip("/")
    token = os.environ["ATTUNE_API_TOKEN"]
    sensor = os.environ["ATTUNE_SENSOR_REF"]
    for rule in json.loads(os.environ.get("ATTUNE_SENSOR_TRIGGERS") or "[]"):
        post_event(api, token, {
            "trigger_ref": rule["trigger_ref"],
            "payload": {"sensor": sensor, "rule_ref": rule["ref"], "config": rule["config"], "language": "python"},
            "trigger_instance_id": "rule_%d" % rule["id"],
        })
    print("python sensor ready", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
