"""diffcomm.diffusion."""
