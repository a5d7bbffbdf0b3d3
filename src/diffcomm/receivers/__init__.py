"""diffcomm.receivers."""
