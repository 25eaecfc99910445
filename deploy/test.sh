#!/usr/bin/env bash
# The test command: set-up, quality gates, then the whole test suite against real Kafka and
# PostgreSQL. Infrastructure it started itself it stops again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
BW_WITH_BROWSER=1 bash deploy/bootstrap.sh
bw=.venv/bin/breachwatch

started_infra=0
if ! $bw infra status >/dev/null 2>&1; then
  started_infra=1
fi
cleanup() {
  if [ "$started_infra" = 1 ] && [ "${BW_KEEP_INFRA:-0}" != 1 ]; then
    $bw infra down || true
  fi
}
trap cleanup EXIT
eval "$($bw infra up)"

echo "== ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy --strict" >&2
.venv/bin/mypy .
echo "== pytest" >&2
set +e
.venv/bin/pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
