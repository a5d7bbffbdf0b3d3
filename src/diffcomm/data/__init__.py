"""diffcomm.data."""
