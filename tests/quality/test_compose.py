"""docker-compose.yml and the Dockerfile, checked against the real services, commands and
settings (there is no container engine here to run them)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from deploy.infra import PG_SETTINGS
from services.adapters.settings import Settings
from services.cli import app
from services.http import SERVICES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
OURS = {name: spec for name, spec in COMPOSE["services"].items() if spec.get("build") == "."}


def test_every_service_runs_once_in_its_own_container() -> None:
    served = [spec["command"][1] for spec in OURS.values()
              if spec.get("command", [None])[0] == "serve"]  # fmt: skip
    assert sorted(served) == sorted(SERVICES)


def test_every_command_the_containers_run_exists() -> None:
    runner = CliRunner()
    commands = [
        spec["command"] for spec in OURS.values() if spec.get("command", [""])[0] == "serve"
    ]
    for spec in OURS.values():
        entry = spec.get("entrypoint")
        if entry and entry[:2] == ["sh", "-c"]:
            commands += [shlex.split(part)[1:] for part in entry[2].split("&&")]
    assert ["topics", "create"] in commands and ["db", "migrate"] in commands
    for command in commands:
        answer = runner.invoke(app, [*command, "--help"])
        assert answer.exit_code == 0, (command, answer.output)


def test_every_setting_given_is_a_real_setting_with_a_valid_value() -> None:
    fields = {f"BW_{name.upper()}" for name in Settings.model_fields}
    for spec in OURS.values():
        env = spec["environment"]
        unknown = sorted(set(env) - fields)
        assert not unknown, f"not settings: {unknown}"
        values = {name[3:].lower(): value for name, value in env.items()}
        parsed = Settings.model_validate(values)  # raises on a value of the wrong kind
        assert parsed.kafka_bootstrap.split(":")[0] in COMPOSE["services"]
        host = re.search(r"@([^:/]+)", parsed.database_url)
        assert host is not None and host.group(1) in COMPOSE["services"]


def test_infrastructure_images_match_what_ci_runs() -> None:
    pom = (ROOT / "deploy" / "kafka" / "pom.xml").read_text()
    kafka_version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert kafka_version is not None
    assert COMPOSE["services"]["kafka"]["image"] == f"apache/kafka:{kafka_version.group(1)}"
    assert COMPOSE["services"]["postgres"]["image"] == "postgres:15"  # Debian bookworm's
    command = COMPOSE["services"]["postgres"]["command"]
    assert command[0] == "postgres" and command[1::2] == ["-c"] * len(PG_SETTINGS)
    assert dict(arg.split("=", 1) for arg in command[2::2]) == PG_SETTINGS
    assert COMPOSE["services"]["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_the_image_holds_every_package_the_project_ships() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    include = re.search(r"include = \[([^\]]+)\]", pyproject)
    assert include is not None
    packages = [p.strip().strip('"').rstrip("*") for p in include.group(1).split(",")]
    copied = set(re.findall(r"^COPY (\S+) ", dockerfile, re.MULTILINE))
    assert set(packages) <= copied, sorted(set(packages) - copied)
