"""Receivers: reconstruct images from ``Received`` symbols, the link and (optionally) a prior.

Posterior-inference decoders live one per file (dps, hifi, ...). Linear links also have the exact
classical receivers in :mod:`diffcomm.receivers.linear` (pseudo-inverse, Gaussian-prior LMMSE) and
the closed-form :func:`~diffcomm.receivers.linear.gaussian_posterior`.
"""

from diffcomm.receivers.linear import fit_gaussian_prior, gaussian_posterior, lmmse_receiver, pinv_receiver

__all__ = ["fit_gaussian_prior", "gaussian_posterior", "lmmse_receiver", "pinv_receiver"]
