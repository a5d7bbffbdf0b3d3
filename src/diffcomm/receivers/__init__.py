"""Receivers: reconstruct images from ``Received`` symbols, the link's operator and (optionally) a prior.

One file per method, each registering itself with its capabilities
(:func:`diffcomm.receivers.base.register_receiver`); this package's import list is the registry's
table of built-in receivers. Shared infrastructure: :mod:`~diffcomm.receivers.base` (protocol,
registry, checks, the DeepJSCC decoder path) and :mod:`~diffcomm.receivers.guidance` (conditional
denoisers over the shared samplers). The exact classical receivers and the closed-form
:func:`~diffcomm.receivers.linear.gaussian_posterior` are in :mod:`~diffcomm.receivers.linear`.

Example:
    >>> from diffcomm.receivers import RECEIVERS
    >>> sorted(RECEIVERS)[:3]
    ['blind', 'cddm', 'cdm']
"""

from diffcomm.receivers import (  # noqa: F401
    blind,
    cddm,
    cdm,
    daps,
    ddnm,
    diffpir,
    dps,
    flow_lt,
    hifi,
    i2sb,
    jscc_decoder,
    latent_dps,
    linear,
    pigdm,
    pnp_cm,
    pnp_flow,
)
from diffcomm.receivers.base import RECEIVERS, ReceiverResult, ReceiverSpec, get_spec, receiver_names
from diffcomm.receivers.linear import fit_gaussian_prior, gaussian_posterior, lmmse_estimate, pinv_estimate

__all__ = ["RECEIVERS", "ReceiverResult", "ReceiverSpec", "fit_gaussian_prior", "gaussian_posterior", "get_spec",
           "lmmse_estimate", "pinv_estimate", "receiver_names"]
