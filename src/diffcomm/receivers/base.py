"""What every receiver shares: the protocol, the registry with capabilities, the result record.

A receiver is a plain function ::

    receiver(link, rx, prior=None, *, generator=None, **options) -> ReceiverResult

that sees only what a receiver may see: ``rx`` (:class:`diffcomm.link.Received`: ``y``, the CSI
``h_hat``, ``n0``, the gain side information, pilots), the link's operator
(:meth:`diffcomm.link.Link.operator`) and a prior; never the true channel or the image.

Each receiver registers beside its code with :func:`register_receiver`, stating what it needs and
offers (:class:`ReceiverSpec`): the link it decodes (``"linear"``, ``"jscc"`` or ``"any"``), the CSI
it uses (``"required"``, or ``"none"`` for blind receivers), the prior kind it takes (``None``,
``"denoiser"`` — a diffusion prior in the EDM denoiser convention — or ``"gaussian"`` — a Gaussian
fitted to training images) and its options with types and ranges (defaults are read from the
function's signature, so they are written once). A receiver built for another prior than the
package's default for an image shape names it in ``default_priors`` (shape -> shipped model name).
The pipeline, the evaluation grid and runner, the CLI and the report read these capabilities; no
receiver is special-cased by name anywhere.

Example:
    >>> @register_receiver("identity-demo", description="returns mid-grey", link="any", csi="required")
    ... def identity_demo(link, rx, prior=None, *, generator=None):
    ...     return ReceiverResult(torch.full((rx.batch, *link.shape), 0.5))
    >>> get_spec("identity-demo").link
    'any'
    >>> _ = RECEIVERS.pop("identity-demo")
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from diffcomm.errors import DiffcommError

LINK_KINDS = ("any", "linear", "jscc")
CSI_NEEDS = ("required", "none")
PRIOR_KINDS = (None, "denoiser", "gaussian")
# "latent": a latent diffusion prior (diffcomm.diffusion.autoencoder.LatentPrior: a denoiser on its
# latent_shape with decode/encode); the pipeline gives the shipped one for the image shape.
PRIOR_KINDS = (*PRIOR_KINDS, "latent")


@dataclass
class ReceiverResult:
    x_hat: torch.Tensor          # pixels (B, C, H, W) in [0, 1]
    nfe: int = 0                 # network evaluations of the prior per image (0 for non-diffusion receivers)
    seconds: float = 0.0         # wall time for the batch
    extras: dict[str, Any] = field(default_factory=dict)
    # Posterior-sample uncertainty, filled by pipeline.decode(..., posterior_samples=S) (None otherwise):
    # {"samples": S, "spread": (B,), "pixel_spread": (B, C, H, W), "agreement": (B,) | None,
    #  "classes": (B, S) | None, "classifier": name | None}; see diffcomm.metrics.uncertainty.
    uncertainty: dict[str, Any] | None = None


@dataclass(frozen=True)
class Option:
    """Type and range of one receiver option (its default comes from the function signature).

    ``kind`` is ``int``, ``float``, ``bool`` or ``str``; ``low``/``high`` bound numbers (inclusive
    unless ``open_low``/``open_high``); ``choices`` restricts strings; ``optional`` allows None; ``objects``:
    classes whose instances pass unchanged (a receiver function's richer form of the option, e.g. a
    :class:`~diffcomm.receivers.semantic.SemanticGuidance` for ``semantic``).
    ``tune`` marks a *strength* option (a guidance step, a data-term weight) with the candidate
    values :func:`diffcomm.calibration.tune` searches on validation images (``diffcomm tune``); the
    winners, stored per link and SNR, become the option's defaults (:mod:`diffcomm.calibration`).
    """

    kind: type
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    optional: bool = False
    open_low: bool = False
    open_high: bool = False
    help: str = ""
    tune: tuple[float, ...] | None = None
    objects: tuple[type, ...] = ()

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        lo = "" if self.low is None else f"{'>' if self.open_low else '>='} {self.low:g}"
        hi = "" if self.high is None else f"{'<' if self.open_high else '<='} {self.high:g}"
        rng = " and ".join(p for p in (lo, hi) if p)
        objects = "".join(f" or a {cls.__name__}" for cls in self.objects)
        return f"{self.kind.__name__}{' ' + rng if rng else ''}{' or none' if self.optional else ''}{objects}"

    def check(self, receiver: str, name: str, value: Any) -> Any:
        """The value, converted (int -> float for float options), or a one-line DiffcommError."""
        bad = DiffcommError(f"{receiver}: option {name} must be {self.describe()}, got {value!r}")
        if self.objects and isinstance(value, self.objects):
            return value
        if value is None:
            if self.optional:
                return None
            raise bad
        if self.kind is bool:
            if not isinstance(value, bool):
                raise bad
            return value
        if self.kind is str:
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise bad
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if self.kind is int and not isinstance(value, int):
            if not float(value).is_integer():
                raise bad
            value = int(value)
        value = self.kind(value)
        if not math.isfinite(value):
            raise bad
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            raise bad
        if self.high is not None and (value > self.high or (self.open_high and value == self.high)):
            raise bad
        return value


@dataclass(frozen=True)
class ReceiverSpec:
    """A registered receiver and its capabilities (see the module docstring)."""

    name: str
    fn: Callable[..., ReceiverResult]
    description: str
    link: str = "any"
    csi: str = "required"
    prior: str | None = None
    options: dict[str, Option] = field(default_factory=dict)
    paper: str = ""
    # image shape -> shipped model name: the prior this receiver is built for, where it is not the
    # package's default prior for the shape (e.g. a consistency model for a consistency receiver)
    default_priors: dict[tuple[int, ...], str] = field(default_factory=dict)

    def defaults(self) -> dict[str, Any]:
        """Default value of every option, from the function's signature."""
        params = inspect.signature(self.fn).parameters
        return {name: params[name].default for name in self.options}

    def validate(self, options: dict[str, Any]) -> dict[str, Any]:
        """Checked options (unknown names, types and ranges raise one-line errors)."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise DiffcommError(f"receiver {self.name} has no option {unknown[0]!r}; its options: "
                                f"{', '.join(self.options) or 'none'}")
        return {name: self.options[name].check(self.name, name, value) for name, value in options.items()}

    def tunable(self) -> dict[str, tuple[float, ...]]:
        """Strength options and their candidate values (the options declared with ``tune=``)."""
        return {name: tuple(o.tune) for name, o in self.options.items() if o.tune}

    def check_link(self, link_kind: str, csi: str) -> None:
        """One-line error when this receiver cannot decode a link of ``link_kind`` with CSI mode ``csi``."""
        if self.link == "linear" and link_kind != "linear":
            raise DiffcommError(f"receiver {self.name} needs a linear link (encoder gaussian or downsample), "
                                f"got a {link_kind} link")
        if self.link == "jscc" and link_kind != "jscc":
            raise DiffcommError(f"receiver {self.name} needs a DeepJSCC link (encoder deepjscc), "
                                f"got a {link_kind} link")
        if self.csi == "required" and csi == "none":
            blind = [s.name for s in RECEIVERS.values() if s.csi == "none"]
            raise DiffcommError(f"receiver {self.name} needs CSI; with csi none use a blind receiver "
                                f"({', '.join(blind) or 'none registered'})")
        if self.csi == "none" and csi != "none":
            raise DiffcommError(f"receiver {self.name} decodes without CSI (it estimates the channel itself); "
                                f"use csi none, not {csi}")

    @property
    def uses_prior(self) -> bool:
        return self.prior is not None


RECEIVERS: dict[str, ReceiverSpec] = {}


def register_receiver(name: str, *, description: str, link: str = "any", csi: str = "required",
                      prior: str | None = None, options: dict[str, Option] | None = None,
                      paper: str = "", default_priors: dict[tuple[int, ...], str] | None = None,
                      ) -> Callable[[Callable[..., ReceiverResult]], Callable[..., ReceiverResult]]:
    """Decorator: register ``fn`` as receiver ``name`` with its capabilities (see the module docstring)."""
    if link not in LINK_KINDS or csi not in CSI_NEEDS or prior not in PRIOR_KINDS:
        raise ValueError(f"register_receiver({name!r}): link in {LINK_KINDS}, csi in {CSI_NEEDS}, "
                         f"prior in {PRIOR_KINDS}")

    def wrap(fn: Callable[..., ReceiverResult]) -> Callable[..., ReceiverResult]:
        params = inspect.signature(fn).parameters
        missing = [o for o in (options or {}) if o not in params or params[o].default is inspect.Parameter.empty]
        if missing:
            raise ValueError(f"receiver {name}: options {missing} need a keyword parameter with a default")
        declared = dict(options or {})
        for key, option in declared.items():
            for value in option.tune or ():
                option.check(name, key, value)  # candidate values must be valid values of the option

        @functools.wraps(fn)
        def checked(link, rx, prior=None, **kwargs: Any) -> ReceiverResult:
            # Every call (direct or through decode()) gets the same one-line checks: link kind, CSI, the
            # received record, the prior, option types and ranges.
            spec.check_link(getattr(link, "kind", "nonlinear"), getattr(link, "csi", "perfect"))
            check_received(link, rx, need_linear=spec.link == "linear", need_csi=spec.csi == "required", receiver=name)
            if spec.prior == "denoiser":
                check_prior(prior, name)
            for key in declared.keys() & kwargs.keys():
                kwargs[key] = declared[key].check(name, key, kwargs[key])
            return fn(link, rx, prior, **kwargs)

        spec = ReceiverSpec(name, checked, description, link, csi, prior, declared, paper,
                            {tuple(k): v for k, v in (default_priors or {}).items()})
        RECEIVERS[name] = spec
        return checked
    return wrap


def get_spec(name: str) -> ReceiverSpec:
    """The registered receiver ``name`` (importing the built-in receivers first), or a one-line error."""
    import diffcomm.receivers  # noqa: F401 - registers the built-in receivers

    spec = RECEIVERS.get(name)
    if spec is None:
        raise DiffcommError(f"unknown receiver {name!r}; choose one of {', '.join(receiver_names())}")
    return spec


def receiver_names() -> list[str]:
    import diffcomm.receivers  # noqa: F401

    return list(RECEIVERS)


def check_received(link, rx, need_linear: bool = False, need_csi: bool = True, receiver: str = "receiver") -> None:
    """One-line errors for a received record or link a receiver cannot use."""
    from diffcomm.link import Received

    if not isinstance(rx, Received):
        raise DiffcommError(f"{receiver}: rx must be the Received record from link.transmit, got {type(rx).__name__}")
    y = rx.y
    if not torch.is_tensor(y) or not torch.is_complex(y):
        raise DiffcommError(f"{receiver}: y must be a complex tensor (B, k), got "
                            f"{type(y).__name__ if not torch.is_tensor(y) else y.dtype}")
    if y.ndim != 2 or y.shape[1] != link.k:
        raise DiffcommError(f"{receiver}: y must have shape (B, {link.k}) for this link, got {tuple(y.shape)}")
    if not torch.isfinite(torch.view_as_real(y)).all():
        raise DiffcommError(f"{receiver}: y contains NaN or inf; check the channel simulation")
    if need_linear and not link.is_linear:
        raise DiffcommError(f"{receiver} needs a linear link (encoder 'gaussian' or 'downsample'); "
                            f"use dps or hifi for nonlinear encoders such as DeepJSCC")
    if need_csi and rx.h_hat is None:
        raise DiffcommError(f"{receiver} needs channel state information; use csi 'perfect' or 'estimated', "
                            f"or a blind receiver")


def check_prior(prior, receiver: str) -> None:
    """One-line error unless ``prior`` is a callable denoiser with ``to_pixels``, ``sigma_min``, ``sigma_max``."""
    missing = [name for name in ("to_pixels", "to_model", "sigma_min", "sigma_max") if not hasattr(prior, name)]
    if not callable(prior) or missing:
        raise DiffcommError(f"{receiver}: prior must be a model-space denoiser prior(x, sigma, class_labels) with "
                            f"to_pixels, to_model, sigma_min and sigma_max (e.g. diffcomm.zoo.load(...)); missing "
                            f"{', '.join(missing) or 'a __call__'}")


def model_space(link, rx, prior):
    """The linear link's system ``y_m = A_m x_m + n`` in ``prior``'s model space (``x_m = a·x + b``).

    The affine map is read off the prior (``to_model`` of 0 and 1); for the shipped priors
    ``x_m = 2x − 1``. See :meth:`diffcomm.link.LinkOperator.model_space`.
    """
    ends = prior.to_model(torch.tensor([0.0, 1.0]))
    offset, scale = float(ends[0]), float(ends[1] - ends[0])
    return link.operator(rx).model_space(scale=scale, offset=offset)


class Timer:
    def __enter__(self) -> Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.t0


def complex_sq_norm(z: torch.Tensor) -> torch.Tensor:
    """Per-sample squared norm of a complex (B, k) tensor."""
    return z.real.pow(2).sum(1) + z.imag.pow(2).sum(1)


# ---- the DeepJSCC decoder as shared infrastructure (used by the decoder receiver, HiFi, blind) ----------

def jscc_model(link):
    """The DeepJSCC model behind a link's encoder, or a one-line error."""
    model = getattr(link.encoder, "model", None)
    if model is None or not hasattr(model, "decode"):
        raise DiffcommError("this receiver needs a DeepJSCC link (--encoder deepjscc-...); "
                            "use a linear-link receiver for other encoders")
    return model


def decoder_snr(model, link, rx, h: torch.Tensor | None = None) -> torch.Tensor:
    """The SNR (dB, per image) fed to a DeepJSCC decoder: the link SNR held inside the training range,
    plus the fading gain 10·log10 mean ``|ĥ|²``.

    The shipped models were trained with the channel SNR drawn from ``[snr_min_db, snr_max_db]``
    (0–20 dB) and, under Rayleigh fading, that SNR plus 10·log10 ``|h|²`` as the decoder's input
    (:func:`diffcomm.transmit.deepjscc.simulate`). Outside the range the SNR modulation
    extrapolates (the decoder lost ≈1.3 dB between 20 and 60 dB); above it the channel is at least
    as clean as the cleanest training case, so the decoder is told the top of its range (and the
    bottom below it), while the fading part, which training covered, is kept.
    """
    snr = torch.full((rx.batch,), float(getattr(link, "receiver_snr_db", link.snr_db)))
    cfg = getattr(model, "config", None)
    snr = snr.clamp(getattr(cfg, "snr_min_db", -math.inf), getattr(cfg, "snr_max_db", math.inf))
    h = rx.h_hat if h is None else h
    if h is not None:
        snr = snr + fading_gain_db(h, rx.batch)
    return snr


def fading_gain_db(h: torch.Tensor, batch: int) -> torch.Tensor:
    """10·log10 mean ``|ĥ|²`` per image (B,): the fading part of the post-equalisation SNR."""
    return 10 * torch.log10(h.abs().pow(2).reshape(batch, -1).mean(1).clamp_min(1e-6))


def jscc_reconstruction(link, rx, h: torch.Tensor | None = None,
                        n0: float | torch.Tensor | None = None) -> torch.Tensor:
    """The DeepJSCC decoder's deterministic reconstruction: MMSE-equalise with ĥ, then decode.

    ``h`` (broadcastable to ``(B, k)``) and ``n0`` override the receiver's CSI and noise level
    (blind receivers pass their own estimates).
    """
    from diffcomm.channels import equalize_mmse

    model = jscc_model(link)
    h = rx.h_hat if h is None else h
    if h is None:
        raise DiffcommError("jscc_reconstruction: this link has no CSI; pass h")
    hk = h.expand_as(rx.y)
    noise = rx.n0 if n0 is None else n0
    if torch.is_tensor(noise):
        noise = noise.reshape(-1, 1)
    s_hat, _ = equalize_mmse(rx.y, hk, noise)
    return model.decode(s_hat, decoder_snr(model, link, rx, hk))


def channel_condition(link, rx, x1: torch.Tensor, snr_range: tuple[float, float] | None = None):
    """The condition of a training-time conditional decoder (:mod:`diffcomm.diffusion.conditional`): the
    link's estimate ``x1`` (the DeepJSCC reconstruction, or A⁺y on a linear link) in model space, the link
    SNR held inside the DeepJSCC's training range on a DeepJSCC link (as the decoder is told,
    :func:`decoder_snr`) or inside ``snr_range`` (the model's own) otherwise, and the fading gain
    10·log10 mean ``|ĥ|²`` (0 dB over AWGN)."""
    from diffcomm.diffusion.conditional import ChannelCondition

    snr = float(getattr(link, "receiver_snr_db", link.snr_db))
    if getattr(link, "kind", None) == "jscc":
        cfg = getattr(jscc_model(link), "config", None)
        snr_range = (getattr(cfg, "snr_min_db", -math.inf), getattr(cfg, "snr_max_db", math.inf))
    if snr_range is not None:
        snr = min(max(snr, snr_range[0]), snr_range[1])
    h = rx.h_hat
    gain = torch.zeros(rx.batch) if h is None else fading_gain_db(h, rx.batch).float()
    return ChannelCondition(x1 * 2 - 1, torch.full((rx.batch,), snr), gain)


def check_model_kind(prior, kind: str, receiver: str) -> None:
    """One-line error unless ``prior`` is the model kind a receiver is built for (its ``model_kind``, read
    through wrappers such as call counters: ``"conditional"``, ``"bridge"``)."""
    if getattr(prior, "model_kind", None) != kind:
        raise DiffcommError(f"{receiver} needs a '{kind}' model (e.g. the shipped one it defaults to), got "
                            f"{type(prior).__name__}; train one with `diffcomm train {kind}`")
