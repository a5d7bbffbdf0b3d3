"""diffcomm.eval."""
