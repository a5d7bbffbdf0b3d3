"""diffcomm.scenarios."""
