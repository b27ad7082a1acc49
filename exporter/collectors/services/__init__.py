"""The services collector."""
