"""Imported by venv_sensor.py through PYTHONPATH ({pack_dir}/lib prepended by the runtime env_vars)."""

MARKER = "venvpack-helper"
