#!/usr/bin/env bash
# Set up a machine for breachwatch: system packages (when missing and we may install them),
# the virtualenv in .venv with the pinned dependencies, and the project itself (editable).
# Idempotent and quick the second time.
set -euo pipefail
cd "$(dirname "$0")/.."

want=()
command -v java >/dev/null 2>&1 || want+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || want+=(maven)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || want+=(postgresql postgresql-contrib)
command -v runuser >/dev/null 2>&1 || want+=(util-linux)
if [ "${BW_WITH_BROWSER:-0}" = 1 ]; then
  # Debian's browser and its matching driver: the browser tests never download one.
  command -v chromium >/dev/null 2>&1 || want+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || want+=(chromium-driver)
fi
if [ "${#want[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: missing system packages: ${want[*]} (install them as root)" >&2
    exit 1
  fi
  echo "bootstrap: apt-get install ${want[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${want[@]}" >&2
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.bw-installed
if [ ! -f "$stamp" ] || [ requirements.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing pinned dependencies (requirements.lock)" >&2
  .venv/bin/python -m pip install -q --upgrade pip uv >&2
  .venv/bin/uv pip install --python .venv/bin/python -q -r requirements.lock >&2
  .venv/bin/uv pip install --python .venv/bin/python -q --no-deps -e '.[dev]' >&2
  touch "$stamp"
fi
