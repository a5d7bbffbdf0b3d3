"""diffcomm: generative semantic communication with diffusion models.

An image is encoded into a few complex channel symbols, sent over a simulated noisy fading
channel, and reconstructed at the receiver by posterior inference with a diffusion prior.
See the conventions in docs/interfaces.md: pixels are float32 in [0, 1] shaped (B, C, H, W); channel
symbols are complex with unit average power; N0 = 10**(-SNR_dB/10).
"""

__version__ = "0.1.0"

from diffcomm.errors import DiffcommError

__all__ = ["DiffcommError", "__version__"]
