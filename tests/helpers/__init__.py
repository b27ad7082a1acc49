"""Shared test helpers: run the exporter, scrape it, check its output with promtool."""
