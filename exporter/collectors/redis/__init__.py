"""The redis collector."""
