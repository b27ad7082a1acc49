# Developer shortcuts; the README's two commands are scripts/run.sh and scripts/test.sh.
.PHONY: run test lint services bench dashboards
run:
	bash scripts/run.sh
test:
	bash scripts/test.sh
lint:
	.venv/bin/ruff check exporter tests scripts bench && .venv/bin/mypy
services:
	bash scripts/test-services.sh
