"""The README documents every setting there is (DESIGN: an operator finds every `BW_` knob in
one table), and the commands it starts with are the two a newcomer runs."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_settings import BaseSettings

from services.adapters.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _variables(model: type[BaseSettings], prefix: str) -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseSettings):
            inner = str(kind.model_config.get("env_prefix", ""))
            names |= _variables(kind, inner)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def test_every_setting_is_in_the_readme() -> None:
    documented = set(re.findall(r"`(BW_[A-Z0-9_]+)`", README))
    missing = sorted(_variables(Settings, "BW_") - documented)
    assert not missing, f"settings missing from the README: {missing}"


def test_the_readme_starts_with_the_two_commands() -> None:
    first_block = README.split("```")[1]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()[1:] if line]
    assert commands == ["make demo", "make test"]
