"""The core and the geometry import no I/O (DESIGN.md), checked on source and at run time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.quality.purity import BANNED_MODULES, violations, violations_in_file

ROOT = Path(__file__).resolve().parents[2]
PURE_PACKAGES = [ROOT / "geo", ROOT / "services" / "core"]
# geo/municipalities.py reads the shipped municipality outlines with importlib.resources.
DATA_READERS = frozenset({"municipalities.py"})


def test_core_and_geo_source_have_no_io() -> None:
    found = [
        v for pkg in PURE_PACKAGES for v in violations(pkg, packaged_data_readers=DATA_READERS)
    ]
    assert not found, "I/O in the pure core:\n" + "\n".join(map(str, found))


def test_the_dispatchers_decisions_are_pure_too() -> None:
    """Escalation, referral, retry and state-machine decisions take time as an argument."""
    policy = ROOT / "services" / "alert_dispatcher" / "policy.py"
    found = violations_in_file(policy)
    assert not found, "I/O in the dispatcher's policy:\n" + "\n".join(map(str, found))


def test_the_check_catches_a_violation(tmp_path: Path) -> None:
    """Proof that the check above can fail: a planted violation of every kind is found."""
    bad = tmp_path / "core"
    bad.mkdir()
    (bad / "rules.py").write_text(
        "import asyncio\n"
        "from sqlalchemy import select\n"
        "import time as clock\n"
        "from datetime import datetime\n"
        "def f():\n"
        "    open('/etc/passwd')\n"
        "    return datetime.now()\n"
    )
    found = {v.what for v in violations(bad)}
    assert found == {
        "imports asyncio",
        "imports from sqlalchemy",
        "imports time",
        "calls open()",
        "calls now()",
    }


def test_importing_core_and_geo_loads_no_io_module() -> None:
    """Transitively too: importing them in a fresh interpreter pulls in none of the I/O stacks."""
    probe = (
        "import sys, json\n"
        "import services.core, geo\n"
        "import pkgutil, importlib\n"
        "for pkg in (services.core, geo):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded = set(json.loads(out.stdout))
    # The network, database and event-loop stacks. Not `socket` itself: the standard library's
    # email.utils imports it (for getfqdn) when importlib.metadata loads, which numba uses to
    # find its extensions; loading it opens nothing, and the source check above keeps our own
    # code from importing it.
    heavy = {"asyncio", "aiokafka", "sqlalchemy", "asyncpg", "fastapi", "httpx", "ssl"}
    heavy |= {"http.client", "urllib.request"}
    assert {name.split(".")[0] for name in heavy} <= BANNED_MODULES
    assert not (loaded & heavy), f"the pure core pulls in {sorted(loaded & heavy)}"
