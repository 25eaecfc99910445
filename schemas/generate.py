"""JSON Schema of every wire contract, generated from the code and checked in under schemas/json.

`python -m schemas.generate` rewrites the files; `tests/unit/test_schema_drift.py` fails when the
checked-in files differ from what the code generates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from schemas import api, wire

SCHEMA_DIR = Path(__file__).resolve().parent / "json"

WIRE_CONTRACTS: dict[str, type[msgspec.Struct]] = {
    "position.v1": wire.Position,
    "device-event.v1": wire.DeviceEvent,
    "order-signal.v1": wire.OrderSignal,
    "order-event.v1": wire.OrderEvent,
    "alert.v1": wire.Alert,
    "dead-letter.v1": wire.DeadLetter,
}


def generated() -> dict[str, dict[str, Any]]:
    schemas: dict[str, dict[str, Any]] = {
        f"{name}.schema.json": msgspec.json.schema(kind) for name, kind in WIRE_CONTRACTS.items()
    }
    schemas["http-order-event.v1.schema.json"] = api.OrderEventIn.model_json_schema()
    return schemas


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> int:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, schema in generated().items():
        (SCHEMA_DIR / name).write_text(render(schema))
        print(f"wrote {SCHEMA_DIR / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
