"""Adapters to other diffusion and inverse-problem libraries (optional extras, imported on use).

- :mod:`diffcomm.interop.diffusers` (extra ``[diffusers]``): a diffusers ``UNet2DModel`` with its
  DDPM/DDIM/EDM scheduler as a diffcomm prior, and our EDM prior saved as a diffusers pipeline.
- :mod:`diffcomm.interop.deepinv` (deepinv installed beside a torch that has torchvision; never in
  the project's venv): a link and its received record as a deepinv ``LinearPhysics``, our prior
  as a deepinv denoiser and a deepinv denoiser as our prior.

Nothing here is imported by ``import diffcomm``.
"""
