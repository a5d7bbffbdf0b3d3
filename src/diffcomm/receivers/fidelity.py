"""The link's data term in a prior's model space, shared by the few-step receivers (flow_lt, pnp_flow, daps).

:class:`DataTerm` holds, for one received batch, what those receivers need besides the prior:

- :meth:`DataTerm.estimate`: the link's cheap deterministic estimate x̂ (model space) and the
  per-image RMS error level σ̂ of x̂ that the SNR and the link imply (the "landing" level of
  Land-then-Transport, Fu et al. 2026);
- :meth:`DataTerm.grad`: ∇F of F(x) = ½‖y − A(x)‖² (A the noiseless link seen by the receiver,
  applied to ``prior.to_pixels(x)``), exactly through the model-space matrix for linear links and by
  autograd through the encoder otherwise;
- :attr:`DataTerm.lipschitz`: L, the largest eigenvalue of ∇²F = JᵀJ (s_max² for linear links; a
  power iteration at the estimate for nonlinear ones), so gradient steps can be written as
  fractions of 1/L whatever the encoder's scale;
- :attr:`DataTerm.noise_var`: τ² = max(N0, N0_floor·``|ĥ|²``)/2 per real dimension, the likelihood's
  noise with the package's model-mismatch floor (:data:`~diffcomm.receivers.guidance.N0_FLOOR`,
  25 dB), so that p(y | x) ∝ exp(−F(x)/τ²);
- :meth:`DataTerm.prox` (linear links): argmin_x ‖y − A x‖² + ρ‖x − x0‖², exact by the SVD, and
  :meth:`DataTerm.data_step`: the same data-consistency step for any link (one bounded gradient
  step through the encoder when the link is nonlinear).

**The estimate and its error level** (model space x_m = 2x − 1 for the shipped priors):

* *Linear link* y_m = a x_m + n, n ~ N(0, σ_y² I), σ_y² = N0/2, a = U diag(s) Vᵀ of rank r. The
  estimate is the zero-forcing / pseudo-inverse image x̂ = a⁺ y_m (LTT's "SVD-domain processing";
  CDDM's start): *unbiased* on the measured directions, x̂ = P_R x + a⁺n, so it lies on the prior's
  Gaussian path x0 + σ ε there (noise σ_y²/s_i² along v_i), and 0 (mid-grey) on the n − r unmeasured
  directions, whose content is missing. Its per-pixel mean-square error, with the missing content
  counted at EDM's data variance σ_d² = 0.25 (Karras et al. 2022; the shipped priors'
  preconditioning), is the level

      σ̂² = [ Σ_{i≤r} σ_y²/s_i² + (n − r) σ_d² ] / n.

  Both terms are explicit: the channel noise seen through the pseudo-inverse (the CDDM effective
  noise, :func:`diffcomm.receivers.cddm.cddm_start_sigma`, is the first term alone) and the prior's
  uncertainty in the null space (e.g. the detail inside each block of the ``downsample`` encoder).
  Rayleigh/block fading and the power gain enter through a = (ĥ g E)/2, so one rule serves every
  channel (LTT's AWGN-equivalent start). Caveat (as CDDM's): the noise is white only when the s_i
  are equal (``downsample``, AWGN or one fading block per frame); a deep fade on one symbol of a
  fast-fading frame puts a large noise on one direction and raises σ̂ for all.
  :meth:`DataTerm.unmeasured` projects fresh noise onto the null space (the missing directions).

* *DeepJSCC link*: x̂ = to_model(Dec(MMSE-EQ(y))) (:func:`~diffcomm.receivers.base.jscc_reconstruction`).
  The decoder is not a closed form, so the level follows the error of the equalised
  symbols it is given: with ε² = mean_j N0'/(``|ĥ_j|²`` + N0'), the MMSE equaliser's error variance per
  unit-power symbol (:func:`diffcomm.channels.equalize_mmse`; N0' = max(N0, N0_floor·mean|ĥ|²)), the
  AWGN-equivalent noise of LTT's LMMSE mapping, plus the decoder's compression error:

      σ̂² = σ_c² + G² ε²,   σ_c = :data:`JSCC_FLOOR`, G = :data:`JSCC_ERROR_GAIN`,

  σ_c being the decoder's model-space RMS pixel error without channel noise (what 49 symbols cannot
  carry) and G its growth per unit of ε, fitted once on training images (see the constants).
  ε ≤ 1, so σ̂ stays bounded as the SNR falls (−10 dB gives ε = 0.95).

Example:
    >>> import torch
    >>> from diffcomm import zoo
    >>> from diffcomm.pipeline import build_link
    >>> link = build_link("deepjscc", (1, 28, 28), "1/16", "awgn", snr_db=10.0)
    >>> gen = torch.Generator().manual_seed(0)
    >>> rx = link.transmit(torch.rand(2, 1, 28, 28), generator=gen)
    >>> term = DataTerm(link, rx, zoo.load("fmnist-prior"))
    >>> x_hat, sigma = term.estimate()
    >>> x_hat.shape, sigma.shape
    (torch.Size([2, 1, 28, 28]), torch.Size([2]))
"""

from __future__ import annotations

import torch

from diffcomm.errors import DiffcommError
from diffcomm.receivers.base import complex_sq_norm, jscc_model, jscc_reconstruction, model_space
from diffcomm.receivers.guidance import N0_FLOOR, gain_power

F64 = torch.float64
SIGMA_DATA = 0.5           # model-space data std assumed for the missing content (EDM's σ_d)
POWER_ITERATIONS = 12      # power iterations for L on nonlinear links

# σ̂² = σ_c² + G²ε² for the DeepJSCC decoder (module docstring), fitted on training images only: the last
# 512 images of the Fashion-MNIST train split through the shipped fmnist-deepjscc-awgn-cbr16 link (AWGN).
# Measured model-space RMS error of the decoder (ε): 0.257 (0.707) at 0 dB, 0.190 (0.490) at 5 dB,
# 0.155 (0.302) at 10 dB, 0.133 (0.0995) at 20 dB; the 0 and 20 dB points give G and σ_c, and the
# rule then predicts 0.201 and 0.160 at 5 and 10 dB. (Rayleigh, fmnist-deepjscc-rayleigh-cbr16:
# 0.306 at 0 dB against 0.27 predicted, 0.193 at 10 dB against 0.20.) Other DeepJSCC models (another
# CBR) have another floor; the receivers' start_scale rescales σ̂.
JSCC_FLOOR = 0.13
JSCC_ERROR_GAIN = 0.31


class DataTerm:
    """The data term of one received batch in ``prior``'s model space; see the module docstring."""

    def __init__(self, link, rx, prior, sigma_data: float = SIGMA_DATA):
        self.link, self.rx, self.prior = link, rx, prior
        self.sigma_data = float(sigma_data)
        self.linear = bool(link.is_linear)
        self.op = link.operator(rx)
        self.system = model_space(link, rx, prior) if self.linear else None
        g2 = gain_power(rx)
        self.gain2 = torch.as_tensor(g2, dtype=F64).expand(rx.batch) if not torch.is_tensor(g2) else g2
        self.noise_var = torch.maximum(torch.full((rx.batch,), float(rx.n0), dtype=F64),
                                       N0_FLOOR * self.gain2) / 2
        self._lipschitz: torch.Tensor | None = None
        self._estimate: tuple[torch.Tensor, torch.Tensor] | None = None
        if not self.linear:
            jscc_model(link)        # a one-line error for nonlinear links without a DeepJSCC decoder

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.rx.batch, *self.link.shape)

    # ---- the estimate ------------------------------------------------------------------------------
    def estimate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(x̂ model space float32 (B, C, H, W), σ̂ float64 (B,)): the cheap estimate and its RMS error level."""
        if self._estimate is None:
            if self.linear:
                s = self.system
                f = s.svd
                x = s.pinv(s.y)
                n = self.link.n
                missing = n - f.keep.sum(-1).to(F64)
                sigma = ((s.noise_var * (f.s_inv ** 2).sum(-1) + missing * self.sigma_data ** 2) / n).sqrt()
                self._estimate = (x.to(torch.float32).reshape(self.shape), sigma)
            else:
                with torch.no_grad():
                    x = self.prior.to_model(jscc_reconstruction(self.link, self.rx))
                self._estimate = (x.float(), (JSCC_FLOOR ** 2 + JSCC_ERROR_GAIN ** 2 * self.symbol_error()).sqrt())
        return self._estimate

    def symbol_error(self) -> torch.Tensor:
        """ε² per image (B,): mean MMSE-equalisation error per unit-power symbol, N0 floored as the likelihood's."""
        h = self.rx.h_hat.expand_as(self.rx.y)
        n0 = torch.maximum(torch.full((self.rx.batch, 1), float(self.rx.n0), dtype=F64),
                           N0_FLOOR * self.gain2.reshape(-1, 1))
        return (n0 / (h.abs().to(F64) ** 2 + n0)).mean(1)

    # ---- the data term ---------------------------------------------------------------------------
    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """‖y − A(x)‖² per image (B,) for model-space images ``x`` (float64 for linear links)."""
        if self.linear:
            return (self.system.y - self.system.apply(x)).pow(2).sum(1)
        return complex_sq_norm(self.rx.y - self.op(self.prior.to_pixels(x)))

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """∇F(x), F = ½‖y − A(x)‖², for model-space images ``x`` -> same shape and dtype as ``x``."""
        if self.linear:
            s = self.system
            g = s.adjoint(s.apply(x) - s.y)
            return g.to(x.dtype).reshape(x.shape)
        with torch.enable_grad():
            xr = x.detach().float().requires_grad_(True)
            loss = 0.5 * self.residual(xr).sum()
            (g,) = torch.autograd.grad(loss, xr)
        return g.to(x.dtype)

    @property
    def lipschitz(self) -> torch.Tensor:
        """L per image (B,) float64: the largest eigenvalue of JᵀJ (exact for linear links)."""
        if self._lipschitz is None:
            if self.linear:
                self._lipschitz = (self.system.svd.s_kept ** 2).amax(-1).clamp_min(1e-12)
            else:
                self._lipschitz = self._power_iteration()
        return self._lipschitz

    def _power_iteration(self) -> torch.Tensor:
        """L ≈ ‖JᵀJ‖ at the estimate by power iteration (deterministic start), float64 (B,)."""
        from torch.func import jvp, vjp

        x0, _ = self.estimate()
        x0 = x0.detach().float()

        def f(x: torch.Tensor) -> torch.Tensor:
            z = self.op(self.prior.to_pixels(x))
            return torch.view_as_real(z).flatten(1)

        gen = torch.Generator().manual_seed(0)
        v = torch.randn(x0.shape, generator=gen)
        v = v / v.flatten(1).norm(dim=1).reshape(-1, *([1] * (v.ndim - 1)))
        lam = torch.zeros(x0.shape[0], dtype=F64)
        with torch.enable_grad():
            _, pullback = vjp(f, x0)
            for _ in range(POWER_ITERATIONS):
                _, jv = jvp(f, (x0,), (v,))
                (w,) = pullback(jv)
                w = w.detach()
                lam = (w * v).flatten(1).sum(1).to(F64)
                norm = w.flatten(1).norm(dim=1).clamp_min(1e-30)
                v = w / norm.reshape(-1, *([1] * (w.ndim - 1)))
        return lam.clamp_min(1e-12)

    def prox(self, x0: torch.Tensor, rho: torch.Tensor | float) -> torch.Tensor:
        """argmin_x ‖y − A x‖² + ρ‖x − x0‖² for a linear link (exact, SVD) -> x0's shape and dtype."""
        if not self.linear:
            raise DiffcommError("DataTerm.prox needs a linear link; use gradient steps (DataTerm.grad) otherwise")
        return self.system.prox(x0, rho).to(x0.dtype).reshape(x0.shape)

    def unmeasured(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` projected onto the directions the link does not measure: the null space of a for linear
        links (I − V Vᵀ over the kept singular vectors); none for the DeepJSCC link, whose decoder
        regenerates every direction (zeros)."""
        if not self.linear:
            return torch.zeros_like(z)
        from diffcomm.linalg import bmv

        f = self.system.svd
        zf = z.flatten(1).to(F64)
        coef = torch.where(f.keep, bmv(f.vh, zf), torch.zeros_like(f.s))
        return (zf - bmv(f.vh.transpose(-1, -2), coef)).to(z.dtype).reshape(z.shape)

    def unmeasured_fraction(self) -> torch.Tensor:
        """(n − r)/n per image (B,) float64: the share of directions :meth:`unmeasured` keeps (0 if nonlinear)."""
        if not self.linear:
            return torch.zeros(self.rx.batch, dtype=F64)
        return 1 - self.system.svd.keep.sum(-1).to(F64) / self.link.n

    def data_step(self, x0: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
        """Data consistency for x0 treated as N(x, r² I): x = argmin_x F(x)/τ² + ‖x − x0‖²/(2 r²).

        Exact for linear links (:meth:`prox` with ρ = τ²/r², DiffPIR's proximal step); for nonlinear
        links one gradient step from x0 of size r²/(τ² + r² L), exact along the stiffest direction of
        the linearised link and never longer than 1/L. ``r2`` is r² per image (B,) (float64).
        """
        r2 = torch.as_tensor(r2, dtype=F64).reshape(-1).clamp_min(1e-300)
        if self.linear:
            return self.prox(x0, self.noise_var / r2)
        step = r2 / (self.noise_var + r2 * self.lipschitz)
        return x0 - rows(step, x0) * self.grad(x0)


def posterior_var(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """r² = σ² σ_d²/(σ² + σ_d²): the variance of x0 given x0 + σ ε under an isotropic N(·, σ_d² I) prior
    (ΠGDM's r_t², Song et al. 2023), the error the data step assigns to a denoiser output at level σ."""
    s2 = torch.as_tensor(sigma, dtype=F64).reshape(-1) ** 2
    return s2 * sigma_data ** 2 / (s2 + sigma_data ** 2)


def rows(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-image (B,) tensor shaped to broadcast against ``x`` (B, ...) in ``x``'s dtype."""
    return torch.as_tensor(v).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


__all__ = ["DataTerm", "JSCC_ERROR_GAIN", "JSCC_FLOOR", "SIGMA_DATA", "posterior_var", "rows"]
