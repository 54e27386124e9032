"""Fixture sensor: dumps its whole environment as a JSON object, then idles until SIGTERM.

The target path is config.dump_path (the sensor config, seen as
ATTUNE_SENSOR_CONFIG_JSON), else $ENVDUMP_PATH. It is written atomically so a
reader never sees half a file.
"""
import json
import os
import signal
import sys
import time


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    config = json.loads(os.environ.get("ATTUNE_SENSOR_CONFIG_JSON") or "null")
    path = config.get("dump_path") if isinstance(config, dict) else None
    path = path or os.environ.get("ENVDUMP_PATH")
    if not path:
        sys.exit("envdump: no config.dump_path and no ENVDUMP_PATH")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(dict(os.environ), f, sort_keys=True)
    os.replace(tmp, path)
    print("envdump wrote " + path, flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
