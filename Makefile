# Developer shortcuts; the README's two commands are scripts/run.sh and scripts/test.sh.
.PHONY: run test lint services bench dashboards docs alerts deploy-check
run:
	bash scripts/run.sh
test:
	bash scripts/test.sh
lint:
	.venv/bin/ruff check exporter tests scripts bench grafana demo && .venv/bin/mypy && .venv/bin/mypy grafana
alerts:
	promtool check rules prometheus/rules/*.yml && promtool test rules prometheus/tests/*.yml
services:
	bash scripts/test-services.sh
docs:
	.venv/bin/python -m exporter.docs
dashboards:
	.venv/bin/python -m grafana.generate
deploy-check:
	.venv/bin/python -m pytest -q tests/deploy/test_deploy.py
