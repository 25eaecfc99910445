.PHONY: demo test lint schemas bench

# Everything on embedded parts, with the simulator and the control-room page.
demo:
	bash deploy/bootstrap.sh
	.venv/bin/breachwatch demo

# Quality gates and the whole test suite against real Kafka and PostgreSQL (set-up included).
test:
	bash deploy/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy .

schemas:
	.venv/bin/python -m schemas.generate

# The benchmarks (real PostgreSQL with PostGIS for the per-fix query baseline).
bench:
	bash deploy/bootstrap.sh
	@if [ "$$(id -u)" = 0 ] && ! ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-15-postgis-3; fi
	eval "$$(.venv/bin/breachwatch infra up)" && .venv/bin/breachwatch bench core && .venv/bin/breachwatch bench ingest && .venv/bin/breachwatch bench pipeline
