"""environment.yml (conda) and constraints.txt (pip) pin the same versions."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def _environment() -> dict[str, str]:
    spec = yaml.safe_load((ROOT / "environment.yml").read_text())
    pins = {}
    for entry in spec["dependencies"]:
        items = entry["pip"] if isinstance(entry, dict) else [entry]
        for item in items:
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*==?\s*([^\s=]+)", item)
            if match:
                pins[match.group(1).lower()] = match.group(2)
    return pins


def test_conda_environment_pins_what_pip_pins() -> None:
    constraints, environment = _constraints(), _environment()
    assert set(constraints) <= set(environment), set(constraints) - set(environment)
    for name, version in constraints.items():
        assert environment[name] == version, name
    assert environment["python"] == "3.11"
