"""The postgres collector."""
