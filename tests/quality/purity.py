"""What "the core imports no I/O" means, as a check that reads the source.

The rules engine (`services/core`) and the geometry (`geo`) must stay pure: no network, no
database, no event loop, no clock, no randomness, no files other than the packaged data read
through `importlib.resources`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

BANNED_MODULES = frozenset(
    {
        "asyncio",
        "aiokafka",
        "sqlalchemy",
        "asyncpg",
        "alembic",
        "fastapi",
        "starlette",
        "httpx",
        "requests",
        "urllib",
        "http",
        "socket",
        "ssl",
        "selectors",
        "subprocess",
        "threading",
        "multiprocessing",
        "time",
        "random",
        "secrets",
        "logging",
        "tempfile",
        "shutil",
        "glob",
        "services.adapters",
        "deploy",
        "uvicorn",
        "prometheus_client",
    }
)
# Calls that read a clock, a random source, the environment or a file.
BANNED_CALLS = frozenset(
    {
        "open",
        "now",
        "utcnow",
        "today",
        "getenv",
        "read_text",
        "read_bytes",
        "write_text",
        "write_bytes",
        "urandom",
        "uuid1",
        "uuid4",
        "input",
        "print",
    }
)


@dataclass(frozen=True)
class Violation:
    path: Path
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _banned(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in BANNED_MODULES)


def violations_in_file(path: Path, *, allow_packaged_data: bool = False) -> list[Violation]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[Violation] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                Violation(path, node.lineno, f"imports {alias.name}")
                for alias in node.names
                if _banned(alias.name)
            ]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _banned(node.module):
                found.append(Violation(path, node.lineno, f"imports from {node.module}"))
        elif isinstance(node, ast.Call):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else (func.attr if isinstance(func, ast.Attribute) else None)
            )
            if name in BANNED_CALLS and not (allow_packaged_data and name == "read_text"):
                found.append(Violation(path, node.lineno, f"calls {name}()"))
    return found


def violations(
    root: Path, *, packaged_data_readers: frozenset[str] = frozenset()
) -> list[Violation]:
    """Every violation under `root`; files named in `packaged_data_readers` may read package
    data (through importlib.resources) and nothing else."""
    found: list[Violation] = []
    for path in sorted(root.rglob("*.py")):
        found += violations_in_file(path, allow_packaged_data=path.name in packaged_data_readers)
    return found
