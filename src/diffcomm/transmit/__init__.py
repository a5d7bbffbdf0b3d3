"""diffcomm.transmit."""
