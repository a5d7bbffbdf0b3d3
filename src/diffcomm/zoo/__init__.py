"""diffcomm.zoo."""
