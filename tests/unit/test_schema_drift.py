"""The checked-in JSON Schemas under schemas/json are exactly what the code generates."""

from __future__ import annotations

from schemas.generate import SCHEMA_DIR, generated, render


def test_every_generated_schema_is_checked_in_unchanged() -> None:
    expected = generated()
    stale = [
        name
        for name, schema in expected.items()
        if not (SCHEMA_DIR / name).exists() or (SCHEMA_DIR / name).read_text() != render(schema)
    ]
    assert not stale, f"schemas drifted from the code, run `python -m schemas.generate`: {stale}"


def test_no_orphan_schema_files() -> None:
    on_disk = {path.name for path in SCHEMA_DIR.glob("*.json")}
    assert on_disk == set(generated()), "a schema file has no contract in the code"
