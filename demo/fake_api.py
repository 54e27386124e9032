"""A tiny stand-in for the two Attune API endpoints the sensor side uses.

    python3 demo/fake_api.py --port-file FILE [--events-file FILE]

POST /auth/internal/sensor-token  (the agent, with its worker JWT)
    answers 200 {"data": {identity_id, sensor_ref, pack_ref, token,
    expires_at, trigger_types, permission_set_refs}}, echoing the request.
POST /api/v1/events               (the sensors, with their sensor token)
    prints the event, appends it as one JSON line to --events-file and
    answers 201 {"data": {"id": N}}; an unknown token gets 401.

It listens on 127.0.0.1 on a free port and writes that port to --port-file
once it accepts connections, so the caller never races the bind. It checks
that a worker JWT is present but not its signature: it is a demo, not the API.
Standard library only.
"""
import argparse
import base64
import datetime
import json
import os
import secrets
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
TOKENS = {}  # sensor token -> sensor ref
STATE = {"events": 0, "events_file": None}


def say(line):
    # One write per line, so lines never interleave with the agent's on a
    # shared terminal (print under -u writes the newline separately).
    sys.stdout.write("[api] " + line + "\n")
    sys.stdout.flush()


def jwt_claims(jwt):
    """The (unverified) claims of a JWT: the demo only reads the worker id."""
    try:
        part = jwt.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return {}


class Handler(BaseHTTPRequestHandler):
    server_version = "attune-demo-api"

    def log_message(self, fmt, *args):  # the default access log is noise here
        pass

    def reply(self, status, body):
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def read_json(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            return json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            return None

    def bearer(self):
        auth = self.headers.get("Authorization", "")
        return auth[len("Bearer "):] if auth.startswith("Bearer ") else ""

    def do_POST(self):
        if self.path == "/auth/internal/sensor-token":
            self.sensor_token()
        elif self.path == "/api/v1/events":
            self.event()
        else:
            say("POST %s: not part of the demo API (404)" % self.path)
            self.reply(404, {"error": "not found"})

    def sensor_token(self):
        req = self.read_json()
        if not self.bearer() or not isinstance(req, dict) or not req.get("sensor_ref"):
            self.reply(401 if not self.bearer() else 400, {"error": "worker JWT and sensor_ref required"})
            return
        token = "demo-sensor-token-" + secrets.token_hex(8)
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=24)
        with LOCK:
            TOKENS[token] = req["sensor_ref"]
        say("sensor token issued to %s (triggers %s)" % (req["sensor_ref"], ", ".join(req.get("trigger_types") or [])))
        data = {
            "identity_id": 1,
            "sensor_ref": req["sensor_ref"],
            "pack_ref": req.get("pack_ref"),
            "token": token,
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "trigger_types": req.get("trigger_types") or [],
            "permission_set_refs": req.get("permission_set_refs") or [],
        }
        if "workload_id" in req:  # a leased sensor: echo its fence, as the newest API does
            data["workload_fence"] = {
                "workload_id": req["workload_id"],
                "worker_id": int(jwt_claims(self.bearer()).get("metadata", {}).get("worker_id", "0")),
                "worker_instance": req.get("worker_instance"),
                "generation": req.get("assignment_generation"),
            }
        self.reply(200, {"data": data})

    def event(self):
        with LOCK:
            sensor = TOKENS.get(self.bearer())
        body = self.read_json()
        if sensor is None:
            say("event refused: unknown sensor token (401)")
            self.reply(401, {"error": "invalid sensor token"})
            return
        if not isinstance(body, dict) or not body.get("trigger_ref"):
            self.reply(400, {"error": "trigger_ref required"})
            return
        with LOCK:
            STATE["events"] += 1
            n = STATE["events"]
            if STATE["events_file"]:
                with open(STATE["events_file"], "a") as f:
                    f.write(json.dumps({"id": n, "sensor": sensor, **body}) + "\n")
        say("event #%d %s from %s: %s" % (n, body["trigger_ref"], sensor, json.dumps(body.get("payload"))))
        self.reply(201, {"data": {"id": n}})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--events-file")
    args = parser.parse_args()
    STATE["events_file"] = args.events_file
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    say("listening on http://127.0.0.1:%d" % server.server_address[1])
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
