"""Linear semantic encoders: random Gaussian projection and pixel-domain area downsampling.

A linear encoder is a real matrix ``E`` of shape ``(2k, n)``, ``n = C·H·W``: the image is flattened
(C, H, W order), multiplied by ``E``, and consecutive pairs of reals become the ``k`` complex
symbols (``diffcomm.channels.real_to_complex``). Power normalisation happens later, in the link.
Linear links make the receiver's problem a linear inverse problem ``y = h ⊙ g (E x) + n`` with an
exact pseudo-inverse and, under a Gaussian prior, an exact posterior (see
:mod:`diffcomm.receivers.linear`).

* :class:`GaussianProjection`: i.i.d. ``N(0, 1/n)`` entries (rows of expected norm 1), the
  compressed-sensing measurement of Candès & Tao (2006); seeded, so transmitter and receiver share E.
* :class:`Downsample`: area averaging to a ``C × h' × w'`` grid with ``C h' w' = 2k``
  (``F.adaptive_avg_pool2d`` windows), the "downsampling" degradation of DDRM/DDNM. It is
  matrix-free (separable forward, adjoint and pseudo-inverse), so it codes images of any size; its
  dense matrix is built lazily, only when small enough.

Example:
    >>> from diffcomm.transmit import make_encoder
    >>> enc = make_encoder("downsample", (1, 28, 28), "1/8")
    >>> enc.k, enc.grid, enc(torch.rand(2, 1, 28, 28)).shape
    (98, (14, 14), torch.Size([2, 98]))
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffcomm.channels import check_shape, real_to_complex
from diffcomm.errors import DiffcommError

MAX_MATRIX_ENTRIES = 200_000_000  # a dense (2k, n) float32 matrix above this (800 MB) is refused


def _check_k(k: int, n: int, name: str) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise DiffcommError(f"{name}: k must be a positive int (complex symbols per image), got {k!r}")
    if 2 * k * n > MAX_MATRIX_ENTRIES:
        raise DiffcommError(f"{name}: a dense {2 * k}x{n} matrix is too large; use smaller images or a lower CBR")
    return k


class LinearEncoder(nn.Module):
    """``x -> real_to_complex(E · vec(x))`` for a fixed real matrix ``E`` (buffer ``matrix``, ``(2k, n)``)."""

    is_linear = True

    def __init__(self, matrix: torch.Tensor, shape: tuple[int, int, int], name: str):
        super().__init__()
        self.shape = check_shape(shape)
        self.n = math.prod(self.shape)
        if matrix.ndim != 2 or matrix.shape[1] != self.n or matrix.shape[0] % 2:
            raise DiffcommError(f"{name}: matrix must be (2k, {self.n}), got {tuple(matrix.shape)}")
        self.k = matrix.shape[0] // 2
        self.name = name
        self.register_buffer("matrix", matrix.to(torch.float32).contiguous())
        self._pinv: torch.Tensor | None = None
        self._rank: int | None = None

    def _check_x(self, x: torch.Tensor) -> None:
        if not torch.is_tensor(x) or not x.is_floating_point() or x.ndim != 4 or tuple(x.shape[1:]) != self.shape:
            got = (x.dtype, tuple(x.shape)) if torch.is_tensor(x) else type(x).__name__
            raise DiffcommError(f"{self.name}: expected float images (B, {', '.join(map(str, self.shape))}), got {got}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels ``(B, C, H, W)`` -> complex64 symbols ``(B, k)`` (before power normalisation)."""
        self._check_x(x)
        return real_to_complex(x.flatten(1).to(self.matrix.dtype) @ self.matrix.T)

    def _factorise(self) -> None:
        """One float64 SVD of ``E`` (the package's single cut-off, :func:`diffcomm.linalg.truncated_svd`)
        gives ``E^+``, the numerical rank and the factorisation the link operator reuses."""
        from diffcomm.linalg import truncated_svd

        f = truncated_svd(self.matrix.double())
        self._svd = f
        self._rank = int(f.keep.sum())
        keep = f.keep
        self._pinv = (f.vh[keep].T / f.s[keep]) @ f.u[:, keep].T

    @property
    def svd(self):
        """The cached float64 :class:`diffcomm.linalg.SVD` of ``E`` (``(2k, n)``)."""
        if self._pinv is None or self._pinv.device != self.matrix.device:
            self._factorise()
        return self._svd

    @property
    def pinv_matrix(self) -> torch.Tensor:
        """Moore-Penrose pseudo-inverse ``E^+`` (float64, ``(n, 2k)``), computed once."""
        if self._pinv is None or self._pinv.device != self.matrix.device:
            self._factorise()
        return self._pinv

    @property
    def rank(self) -> int:
        """Numerical rank of ``E`` (float64 SVD), computed once."""
        if self._rank is None:
            self._factorise()
        return self._rank

    @property
    def full_row_rank(self) -> bool:
        """True if ``E E^+ = I`` (rank ``2k``); then ``(D E)^+ = E^+ D^{-1}`` for any invertible D."""
        return self.rank == 2 * self.k

    def decode_pinv(self, v: torch.Tensor) -> torch.Tensor:
        """Minimum-norm least-squares image ``E^+ v`` for reals ``v`` ``(B, 2k)`` -> float32 ``(B, C, H, W)``.

        Not clamped to [0, 1] (the exact linear pseudo-inverse).
        """
        if not torch.is_tensor(v) or v.is_complex() or v.ndim != 2 or v.shape[1] != 2 * self.k:
            got = (v.dtype, tuple(v.shape)) if torch.is_tensor(v) else type(v).__name__
            raise DiffcommError(f"{self.name}.decode_pinv: expected real (B, {2 * self.k}), got {got}")
        x = v.double() @ self.pinv_matrix.T
        return x.to(torch.float32).reshape(-1, *self.shape)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "k": self.k}


class GaussianProjection(LinearEncoder):
    """Random real Gaussian projection ``E_ij ~ N(0, 1/n)`` of shape ``(2k, n)``, drawn from ``seed``.

    For ``2k <= n`` it has full row rank with probability 1; ``E^+ E`` projects onto its row space.

    Example:
        >>> GaussianProjection((1, 28, 28), k=49, seed=0).matrix.shape
        torch.Size([98, 784])
    """

    def __init__(self, shape: tuple[int, int, int], k: int, seed: int = 0):
        shape = check_shape(shape)
        n = math.prod(shape)
        _check_k(k, n, "gaussian")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise DiffcommError(f"gaussian: seed must be an int, got {seed!r}")
        gen = torch.Generator().manual_seed(seed)
        matrix = torch.randn(2 * k, n, generator=gen, dtype=torch.float64) / math.sqrt(n)
        super().__init__(matrix, shape, "gaussian")
        self.seed = seed

    def config(self) -> dict[str, Any]:
        return {**super().config(), "seed": self.seed}


def _grid_pairs(m: int, h: int, w: int) -> list[tuple[int, int]]:
    """Factor pairs ``(a, b)``, ``a b = m``, that fit in an ``h × w`` image."""
    return [(a, m // a) for a in range(1, min(m, h) + 1) if m % a == 0 and m // a <= w]


def downsample_grid(shape: tuple[int, int, int], k: int) -> tuple[int, int] | None:
    """Grid ``(h', w')`` with ``C h' w' = 2k`` closest to the image aspect ratio, or None if none fits.

    Among the factor pairs of ``2k / C`` that fit in ``H × W`` it picks the one minimising
    ``|log(h'/w') - log(H/W)|`` (ties: the smaller h').
    """
    c, h, w = shape
    if (2 * k) % c:
        return None
    pairs = _grid_pairs(2 * k // c, h, w)
    if not pairs:
        return None
    target = math.log(h / w)
    return min(pairs, key=lambda p: (abs(math.log(p[0] / p[1]) - target), p[0]))


def valid_downsample_cbrs(shape: tuple[int, int, int], near_k: int, count: int = 3) -> list[str]:
    """Up to ``count`` valid CBRs below and above ``near_k`` symbols, as ``'p/q (k=..)'`` strings."""
    n = math.prod(shape)
    below = [k for k in range(near_k - 1, 0, -1) if downsample_grid(shape, k)][:count]
    above = [k for k in range(near_k + 1, n // 2 + 1) if downsample_grid(shape, k)][:count]
    return [f"{Fraction(k, n)} (k={k})" for k in sorted(below + above)]


def _pool_matrix_1d(size: int, out: int) -> torch.Tensor:
    """``(out, size)`` matrix of ``F.adaptive_avg_pool1d`` applied to the identity basis."""
    eye = torch.eye(size, dtype=torch.float64).reshape(size, 1, size)
    return F.adaptive_avg_pool1d(eye, out).reshape(size, out).T.contiguous()  # (kron needs contiguous)


class Downsample(LinearEncoder):
    """Area downsampling to a ``C × h' × w'`` grid of ``2k`` reals, applied without a dense matrix.

    The grid is the factor pair of ``2k / C`` closest to the image aspect ratio
    (:func:`downsample_grid`). The encoder is ``E = I_C ⊗ P_h ⊗ P_w`` with ``P_h`` ``(h', H)`` and
    ``P_w`` ``(w', W)`` the 1-D ``F.adaptive_avg_pool1d`` windows (2-D adaptive average pooling is
    separable because each window is a rectangle), so every operation is matrix-free and works on
    any image size (a 512×512×3 photo at CBR 1/16 would need a dense 98,304 × 786,432 matrix):

    * forward ``E x``: ``F.adaptive_avg_pool2d`` (area averaging, exactly what the matrix encodes);
    * :meth:`apply_adjoint` ``Eᵀ v = P_hᵀ V P_w`` per channel: each output spread back over its window
      with weight ``1/|window|``;
    * :meth:`pinv` ``E⁺ v = P_h⁺ V P_w⁺ᵀ`` (the pseudo-inverse of a Kronecker product is the product of
      the pseudo-inverses). ``P_h`` has full row rank (window starts strictly increase), so
      ``P_h⁺ = P_hᵀ (P_h P_hᵀ)⁻¹``; for non-overlapping windows (``h'`` divides H) ``P_h P_hᵀ`` is
      diagonal and ``E⁺ E x`` is the block-average image upsampled by repetition. ``E`` has full row
      rank ``2k``, which is what lets :class:`diffcomm.link.LinkOperator` invert ``A = D_c E`` as
      ``E⁺ D_c⁻¹`` without a matrix. Where the grid does not divide the image (e.g. 160×160 at CBR 1/16
      gets a 50×64 grid) the adaptive windows overlap and the minimum-norm ``E⁺ v`` is not a
      block-constant image: exact, but it can look much worse than on dividing sizes.

    The dense ``(2k, n)`` :attr:`matrix` (and the cached float64 :attr:`svd`) stay available, built
    lazily on first use, when ``2k·n <=`` :data:`MAX_MATRIX_ENTRIES`; beyond that they raise a
    one-line error and only the matrix-free methods apply. ``matrix_free = True`` tells the link.

    Example:
        >>> Downsample((1, 28, 28), k=49).grid
        (7, 14)
        >>> Downsample((3, 512, 512), k=49152).grid       # CBR 1/16 on a colour photo: no dense matrix
        (128, 256)
    """

    matrix_free = True

    def __init__(self, shape: tuple[int, int, int], k: int):
        nn.Module.__init__(self)
        shape = check_shape(shape)
        c, h, w = shape
        n = math.prod(shape)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise DiffcommError(f"downsample: k must be a positive int (complex symbols per image), got {k!r}")
        grid = downsample_grid(shape, k)
        if grid is None:
            why = (f"2k={2 * k} is not a multiple of C={c}" if (2 * k) % c
                   else f"2k/C={2 * k // c} has no factor pair that fits in {h}x{w}")
            valid = valid_downsample_cbrs(shape, k)
            raise DiffcommError(f"downsample: k={k} does not give a pixel grid ({why}); "
                                f"valid CBRs nearby: {', '.join(valid) or 'none'}")
        self.shape, self.n, self.k, self.name, self.grid = shape, n, k, "downsample", grid
        a, b = grid
        ph, pw = _pool_matrix_1d(h, a), _pool_matrix_1d(w, b)
        self.register_buffer("pool_h", ph)                                  # (h', H) float64
        self.register_buffer("pool_w", pw)                                  # (w', W)
        self.register_buffer("pinv_h", torch.linalg.pinv(ph))               # (H, h') = P_hᵀ (P_h P_hᵀ)⁻¹
        self.register_buffer("pinv_w", torch.linalg.pinv(pw))               # (W, w')
        self._dense: torch.Tensor | None = None
        self._pinv: torch.Tensor | None = None
        self._rank: int | None = 2 * k                                      # full row rank (see the docstring)

    @property
    def has_matrix(self) -> bool:
        """True when the dense ``(2k, n)`` matrix is small enough to build (``2k·n <= MAX_MATRIX_ENTRIES``)."""
        return 2 * self.k * self.n <= MAX_MATRIX_ENTRIES

    @property
    def matrix(self) -> torch.Tensor:
        """The dense float32 ``(2k, n)`` matrix of ``E`` (``block_diag`` of ``kron(P_h, P_w)``), built once on
        first use; a one-line error for images too large for it (use the matrix-free methods)."""
        if not self.has_matrix:
            raise DiffcommError(f"downsample: a dense {2 * self.k}x{self.n} matrix is too large "
                                f"(> {MAX_MATRIX_ENTRIES:,} entries); this image needs the matrix-free path "
                                f"(forward, apply_adjoint, pinv)")
        if self._dense is None or self._dense.device != self.pool_h.device:
            per_channel = torch.kron(self.pool_h, self.pool_w)                # (h' w', H W)
            self._dense = torch.block_diag(*([per_channel] * self.shape[0])).to(torch.float32).contiguous()
        return self._dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels ``(B, C, H, W)`` -> complex64 symbols ``(B, k)``: ``F.adaptive_avg_pool2d`` to the grid."""
        self._check_x(x)
        return real_to_complex(F.adaptive_avg_pool2d(x.to(torch.float32), self.grid).flatten(1))

    def _grid_values(self, v: torch.Tensor, who: str) -> torch.Tensor:
        if not torch.is_tensor(v) or v.is_complex() or not v.is_floating_point() or v.ndim != 2 \
                or v.shape[1] != 2 * self.k:
            got = (v.dtype, tuple(v.shape)) if torch.is_tensor(v) else type(v).__name__
            raise DiffcommError(f"downsample.{who}: expected real (B, {2 * self.k}), got {got}")
        return v.reshape(v.shape[0], self.shape[0], *self.grid)

    def apply_adjoint(self, v: torch.Tensor) -> torch.Tensor:
        """``Eᵀ v`` for reals ``v`` ``(B, 2k)`` -> ``(B, n)`` in ``v``'s dtype (``P_hᵀ V P_w`` per channel)."""
        g = self._grid_values(v, "apply_adjoint")
        ph, pw = self.pool_h.to(v.dtype), self.pool_w.to(v.dtype)
        return torch.einsum("ah,ncab,bw->nchw", ph, g, pw).flatten(1)

    def pinv(self, v: torch.Tensor) -> torch.Tensor:
        """``E⁺ v`` for reals ``v`` ``(B, 2k)`` -> ``(B, n)`` in ``v``'s dtype (``P_h⁺ V P_w⁺ᵀ`` per channel)."""
        g = self._grid_values(v, "pinv")
        qh, qw = self.pinv_h.to(v.dtype), self.pinv_w.to(v.dtype)
        return torch.einsum("ha,ncab,wb->nchw", qh, g, qw).flatten(1)

    def decode_pinv(self, v: torch.Tensor) -> torch.Tensor:
        """Minimum-norm least-squares image ``E⁺ v`` -> float32 ``(B, C, H, W)`` (matrix-free, not clamped)."""
        return self.pinv(v.double() if torch.is_tensor(v) and v.is_floating_point() else v).to(
            torch.float32).reshape(-1, *self.shape)
