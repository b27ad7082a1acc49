"""`python -m exporter` runs the same entry point as the `stackmon` script."""

from exporter.cli import main

raise SystemExit(main())
