"""diffcomm.metrics."""
