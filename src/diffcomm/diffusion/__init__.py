"""Diffusion models: denoisers, schedules, samplers, guidance, and the other prior kinds behind one interface.

Every prior is a denoiser ``denoiser(x, sigma) -> x0_hat`` with ``x = x0 + sigma * eps`` (EDM,
:mod:`~diffcomm.diffusion.precond`): VP networks through :mod:`~diffcomm.diffusion.wrappers`, flow matching
(:mod:`~diffcomm.diffusion.flow`), consistency models (:mod:`~diffcomm.diffusion.consistency`), latent priors
(:mod:`~diffcomm.diffusion.autoencoder`), closed forms for tests (:mod:`~diffcomm.diffusion.gaussian`).
Samplers (:mod:`~diffcomm.diffusion.samplers`) run any of them over an explicit noise schedule
(:mod:`~diffcomm.diffusion.schedules`).
"""
