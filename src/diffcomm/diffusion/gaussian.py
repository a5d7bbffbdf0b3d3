"""Closed-form optimal denoisers for Gaussian and Gaussian-mixture data (tests and references).

If x0 ~ N(m, Σ) and x = x0 + σ ε, then x ~ N(m, Σ + σ² I) and the MMSE denoiser is

    D(x; σ) = E[x0 | x] = m + Σ (Σ + σ² I)^{-1} (x - m)                      (Gaussian)

which is Tweedie's formula D = x + σ² ∇ log p_σ(x) (Efron 2011; Karras et al. 2022, eq. 3).
For a mixture Σ_k w_k N(m_k, Σ_k) the posterior is a mixture of the per-component posteriors,
weighted by the responsibilities r_k(x) ∝ w_k N(x; m_k, Σ_k + σ² I):

    D(x; σ) = Σ_k r_k(x) [m_k + Σ_k (Σ_k + σ² I)^{-1} (x - m_k)].

Both work on batches ``x`` of shape (B, ...) whose trailing dimensions flatten to d, with σ a
scalar or (B,), and compute in float64 (returning ``x.dtype``). They play the role of a trained
denoiser in the exactness tests of the samplers: with x_T = x0 + σ_max ε drawn exactly, a
correct sampler must reproduce the data distribution.

Example:
    >>> D = GaussianDenoiser(torch.zeros(2), torch.eye(2))
    >>> D(torch.ones(1, 2), torch.tensor(1.0))           # Σ (Σ + I)^{-1} x = x / 2
    tensor([[0.5000, 0.5000]])
"""

from __future__ import annotations

import math

import torch

from diffcomm.errors import DiffcommError

F64 = torch.float64


def _eigh_psd(cov: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not torch.allclose(cov, cov.transpose(-1, -2), atol=1e-10 * (1 + cov.abs().max())):
        raise DiffcommError(f"{name} must be symmetric")
    lam, u = torch.linalg.eigh(cov)
    if (lam < -1e-10 * (1 + lam.abs().max())).any():
        raise DiffcommError(f"{name} must be positive semi-definite; smallest eigenvalue {float(lam.min()):.3g}")
    return lam.clamp(min=0), u


def _flat(x: torch.Tensor, d: int) -> torch.Tensor:
    if x.ndim < 2 or math.prod(x.shape[1:]) != d:
        raise DiffcommError(f"x must have shape (B, ...) with {d} values per sample; got {tuple(x.shape)}")
    return x.reshape(x.shape[0], d).to(F64)


def _sigma2(sigma: torch.Tensor | float, batch: int) -> torch.Tensor:
    s = torch.as_tensor(sigma, dtype=F64).reshape(-1)
    if s.numel() not in (1, batch):
        raise DiffcommError(f"sigma must be a scalar or have one value per sample ({batch}); got {s.numel()}")
    if s.numel() > 1 and bool((s == s[0]).all()):     # one σ for the batch (as samplers pass it)
        s = s[:1]
    return (s * s)[:, None]                                # (B, 1) or (1, 1), broadcasts over (B, d)


class GaussianDenoiser:
    """Exact E[x0 | x0 + σ ε] for x0 ~ N(mean, cov); see the module docstring.

    Example:
        >>> D = GaussianDenoiser(torch.tensor([1.0, 0.0]), torch.diag(torch.tensor([3.0, 1.0])))
        >>> D(torch.tensor([[1.0, 2.0]]), 1.0)              # m + diag(3/4, 1/2) (x - m)
        tensor([[1., 1.]])
    """

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor):
        self.mean = torch.as_tensor(mean, dtype=F64).reshape(-1)
        self.dim = len(self.mean)
        self.cov = torch.as_tensor(cov, dtype=F64)
        if self.cov.shape != (self.dim, self.dim):
            raise DiffcommError(f"cov must be ({self.dim}, {self.dim}) to match mean; got {tuple(self.cov.shape)}")
        self.eigvals, self.eigvecs = _eigh_psd(self.cov, "cov")

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        z = (_flat(x, self.dim) - self.mean) @ self.eigvecs
        gain = self.eigvals / (self.eigvals + _sigma2(sigma, x.shape[0]))
        return (self.mean + (gain * z) @ self.eigvecs.T).reshape(x.shape).to(x.dtype)

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float = 0.0) -> torch.Tensor:
        """log N(x; m, Σ + σ² I) per sample, shape (B,)."""
        z = (_flat(x, self.dim) - self.mean) @ self.eigvecs
        var = self.eigvals + _sigma2(sigma, x.shape[0])
        return -0.5 * ((z * z / var).sum(1) + var.log().sum(1) + self.dim * math.log(2 * math.pi))

    def sample(self, n: int, generator: torch.Generator | None = None, sigma: float = 0.0) -> torch.Tensor:
        """n draws from N(m, Σ + σ² I), float64 (n, d)."""
        xi = torch.randn(n, self.dim, generator=generator, dtype=F64)
        return self.mean + (xi * (self.eigvals + sigma ** 2).sqrt()) @ self.eigvecs.T

    def ode_flow(self, x: torch.Tensor, sigma_from: float, sigma_to: float) -> torch.Tensor:
        """Exact solution of the probability-flow ODE dx/dσ = (x - D(x; σ)) / σ from σ_from to σ_to.

        In the eigenbasis of Σ, dz_k/dσ = σ z_k / (λ_k + σ²), so
        z_k(σ_to) = z_k(σ_from) sqrt((λ_k + σ_to²) / (λ_k + σ_from²)) (Karras et al. 2022, eq. 4
        with s(t) = 1). The map pushes N(m, Σ + σ_from² I) onto N(m, Σ + σ_to² I).
        """
        z = (_flat(x, self.dim) - self.mean) @ self.eigvecs
        ratio = ((self.eigvals + sigma_to ** 2) / (self.eigvals + sigma_from ** 2)).sqrt()
        return (self.mean + (ratio * z) @ self.eigvecs.T).reshape(x.shape).to(x.dtype)


class GaussianMixtureDenoiser:
    """Exact E[x0 | x0 + σ ε] for x0 ~ Σ_k w_k N(m_k, Σ_k); components double as classes.

    ``class_labels`` (B,) of ints in [0, K] selects, per sample, component k (the conditional
    denoiser D(x | c = k)) or, for the null label K, the whole mixture (D(x | ∅)), so the object
    is a ready-made conditional prior for classifier-free guidance tests.

    Example:
        >>> D = GaussianMixtureDenoiser(torch.tensor([0.5, 0.5]), torch.tensor([[-1.0], [1.0]]),
        ...                             torch.full((2, 1, 1), 1e-12))
        >>> D(torch.tensor([[0.0]]), 1.0)                   # symmetric: posterior mean 0
        tensor([[0.]])
        >>> D(torch.tensor([[0.0], [0.0]]), 1.0, class_labels=torch.tensor([0, 1]))
        tensor([[-1.],
                [ 1.]])
    """

    def __init__(self, weights: torch.Tensor, means: torch.Tensor, covs: torch.Tensor):
        self.weights = torch.as_tensor(weights, dtype=F64).reshape(-1)
        self.means = torch.as_tensor(means, dtype=F64)
        self.covs = torch.as_tensor(covs, dtype=F64)
        k = len(self.weights)
        if self.means.ndim != 2 or self.means.shape[0] != k:
            raise DiffcommError(f"means must be (K, d) with K = {k} components; got {tuple(self.means.shape)}")
        self.num_components, self.dim = self.means.shape
        if self.covs.shape != (k, self.dim, self.dim):
            raise DiffcommError(f"covs must be ({k}, {self.dim}, {self.dim}); got {tuple(self.covs.shape)}")
        if (self.weights < 0).any() or not math.isclose(float(self.weights.sum()), 1.0, rel_tol=1e-6):
            raise DiffcommError("weights must be non-negative and sum to 1")
        self.weights = self.weights / self.weights.sum()
        self.eigvals, self.eigvecs = _eigh_psd(self.covs, "covs")   # (K, d), (K, d, d)
        k, d = self.num_components, self.dim
        self._u_cat = self.eigvecs.permute(1, 0, 2).reshape(d, k * d)    # [U_1 ... U_K], (d, K d)
        self._m_rot = torch.einsum("kd,kde->ke", self.means, self.eigvecs).reshape(k * d)

    @classmethod
    def ring(cls, weights: torch.Tensor, radius: float, var_along: float, var_across: float,
             start_deg: float = 90.0) -> GaussianMixtureDenoiser:
        """K = len(weights) elongated 2-D components evenly spaced on a circle, each stretched along it (thin arcs):
        component k at angle start + 360°·k/K, variance ``var_along`` tangentially and ``var_across`` radially.

        Example:
            >>> D = GaussianMixtureDenoiser.ring(torch.tensor([0.5, 0.3, 0.2]), 2.0, 0.5, 0.04)
            >>> D.means.round(decimals=3)
            tensor([[ 0.0000,  2.0000],
                    [-1.7320, -1.0000],
                    [ 1.7320, -1.0000]], dtype=torch.float64)
        """
        weights = torch.as_tensor(weights, dtype=F64).reshape(-1)
        angles = (start_deg + 360.0 * torch.arange(len(weights), dtype=F64) / len(weights)).deg2rad()
        means = radius * torch.stack([angles.cos(), angles.sin()], 1)
        tangent = torch.stack([-angles.sin(), angles.cos()], 1)             # (K, 2) unit vectors along the circle
        normal = torch.stack([angles.cos(), angles.sin()], 1)
        covs = (var_along * tangent[:, :, None] * tangent[:, None, :]
                + var_across * normal[:, :, None] * normal[:, None, :])
        return cls(weights, means, covs)

    @property
    def null_label(self) -> int:
        """Label that selects the unconditional mixture (= number of components)."""
        return self.num_components

    def _component_terms(self, x: torch.Tensor, sigma) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-component log w_k N(x; m_k, Σ_k + σ²I) (B, K) and Σ_k(Σ_k+σ²I)^{-1}(x-m_k) in each
        component's eigenbasis (B, K, d)."""
        xf = _flat(x, self.dim)
        b, k, d = xf.shape[0], self.num_components, self.dim
        z = (xf @ self._u_cat - self._m_rot).reshape(b, k, d)                   # U_kᵀ (x - m_k)
        var = self.eigvals + _sigma2(sigma, b)[:, :, None]                      # (B, K, d)
        logp = -0.5 * ((z * z / var).sum(-1) + var.log().sum(-1) + d * math.log(2 * math.pi))
        return logp + self.weights.log(), z * self.eigvals / var

    def _select(self, logw: torch.Tensor, class_labels: torch.Tensor | None) -> torch.Tensor:
        if class_labels is None:
            return logw
        c = torch.as_tensor(class_labels).reshape(-1).long()
        if len(c) != logw.shape[0] or (c < 0).any() or (c > self.num_components).any():
            raise DiffcommError(f"class_labels must be (B,) ints in [0, {self.num_components}] "
                                f"({self.num_components} = unconditional)")
        onehot = torch.nn.functional.one_hot(c.clamp(max=self.num_components - 1), self.num_components).bool()
        mask = onehot | (c == self.num_components)[:, None]
        return logw.masked_fill(~mask, -math.inf)

    def responsibilities(self, x: torch.Tensor, sigma, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior component probabilities p(k | x; σ), shape (B, K)."""
        logw, _ = self._component_terms(x, sigma)
        return torch.softmax(self._select(logw, class_labels), dim=1)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float,
                 class_labels: torch.Tensor | None = None) -> torch.Tensor:
        logw, w = self._component_terms(x, sigma)
        r = torch.softmax(self._select(logw, class_labels), dim=1)
        # Σ_k r_k (m_k + U_k w_k) = r M + [U_1 ... U_K] vec(r_k w_k)
        out = r @ self.means + (r[:, :, None] * w).reshape(len(r), -1) @ self._u_cat.T
        return out.reshape(x.shape).to(x.dtype)

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float = 0.0,
                 class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """log p_σ(x | c) per sample (B,); the mixture when ``class_labels`` is None or null."""
        logw, _ = self._component_terms(x, sigma)
        logw = self._select(logw, class_labels)
        if class_labels is not None:       # renormalise the prior weights of the selected components
            logw = logw - torch.logsumexp(self._select(self.weights.log().expand_as(logw), class_labels), 1,
                                          keepdim=True)
        return torch.logsumexp(logw, dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None,
               class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """n draws, float64 (n, d): from the mixture, or per sample from component ``class_labels``."""
        if class_labels is None:
            comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        else:
            c = torch.as_tensor(class_labels).reshape(-1).long()
            if len(c) != n:
                raise DiffcommError(f"class_labels must have n = {n} entries; got {len(c)}")
            mix = torch.multinomial(self.weights, n, replacement=True, generator=generator)
            comp = torch.where(c == self.num_components, mix, c)
        xi = torch.randn(n, self.dim, generator=generator, dtype=F64) * self.eigvals[comp].sqrt()
        return self.means[comp] + torch.einsum("nd,ned->ne", xi, self.eigvecs[comp])
