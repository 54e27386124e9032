"""Demo sensor: posts one demo.tick event per rule every few seconds.

Standard library only. It reads what the agent hands every sensor:
ATTUNE_API_URL and ATTUNE_API_TOKEN (where and how to post),
ATTUNE_SENSOR_TRIGGERS (the enabled rules it serves) and
ATTUNE_SENSOR_CONFIG_JSON (the sensor row's config; here interval_seconds).
SIGTERM, which the agent sends at shutdown, ends it with exit code 0.
"""
import datetime
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request


def post_event(api, token, body):
    """POST one event; a refusal is reported and the sensor keeps ticking."""
    req = urllib.request.Request(
        api + "/api/v1/events",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + token},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp).get("data", {}).get("id")
    except (urllib.error.URLError, OSError, ValueError) as err:
        print("ticker: event not accepted: %s" % err, file=sys.stderr, flush=True)
        return None


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    api = os.environ["ATTUNE_API_URL"].rstrip("/")
    token = os.environ["ATTUNE_API_TOKEN"]
    rules = json.loads(os.environ.get("ATTUNE_SENSOR_TRIGGERS") or "[]")
    config = json.loads(os.environ.get("ATTUNE_SENSOR_CONFIG_JSON") or "null") or {}
    interval = float(config.get("interval_seconds", 3))
    print("ticker: serving %d rule(s), one tick every %gs" % (len(rules), interval), flush=True)
    tick = 0
    while True:
        tick += 1
        for rule in rules:
            event_id = post_event(api, token, {
                "trigger_ref": rule["trigger_ref"],
                "payload": {
                    "tick": tick,
                    "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "host": socket.gethostname(),
                    "message": (rule.get("config") or {}).get("message", "hello from the demo sensor"),
                },
                "trigger_instance_id": "rule_%d" % rule["id"],
            })
            if event_id is not None:
                print("ticker: tick %d accepted as event %s" % (tick, event_id), flush=True)
        time.sleep(interval)


if __name__ == "__main__":
    main()
