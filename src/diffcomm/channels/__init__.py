"""diffcomm.channels."""
