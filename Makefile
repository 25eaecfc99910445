.PHONY: demo test lint schemas infra-up infra-down

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
