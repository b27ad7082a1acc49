"""The host collector."""
