"""One end-to-end transmission, by names: build the link, run a receiver, score the result.

This is the single place where encoder names, receiver names and shipped models meet; the CLI
(``diffcomm transmit``), the evaluation runner and the demo all call it.

Encoders: ``gaussian``, ``downsample`` (linear, any image size) and ``deepjscc`` (the shipped
Fashion-MNIST DeepJSCC for the link's channel and CBR; ``deepjscc-awgn`` / ``deepjscc-rayleigh``
pick the training channel explicitly). Receivers: the registry of :mod:`diffcomm.receivers`
(:func:`~diffcomm.receivers.base.get_spec`), whose capabilities decide what each needs: the
link kind, CSI, and the prior kind, which :func:`default_prior` provides (the shipped diffusion
prior for ``"denoiser"``, a Gaussian fitted to training images for ``"gaussian"``).

Example:
    >>> link = build_link("gaussian", (1, 28, 28), "1/16", "awgn", 10.0)
    >>> rx = link.transmit(torch.rand(2, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    >>> decode("pinv", link, rx).x_hat.shape
    torch.Size([2, 1, 28, 28])
"""

from __future__ import annotations

from typing import Any

import torch

from diffcomm.errors import DiffcommError
from diffcomm.receivers.base import ReceiverResult, ReceiverSpec, get_spec

JSCC_MODELS = {("awgn", 1 / 16): "fmnist-deepjscc-awgn-cbr16", ("rayleigh", 1 / 16): "fmnist-deepjscc-rayleigh-cbr16",
               ("awgn", 1 / 8): "fmnist-deepjscc-awgn-cbr8", ("rayleigh", 1 / 8): "fmnist-deepjscc-rayleigh-cbr8"}


def jscc_model_name(channel: str, cbr: float, variant: str | None = None) -> str:
    """Zoo name of the DeepJSCC for a channel and CBR (Rician uses the Rayleigh-trained model)."""
    trained = variant or ("awgn" if channel == "awgn" else "rayleigh")
    for (ch, c), name in JSCC_MODELS.items():
        if ch == trained and abs(c - cbr) < 1e-9:
            return name
    supported = sorted({f"1/{round(1 / c)}" for _, c in JSCC_MODELS})
    raise DiffcommError(f"no shipped DeepJSCC for CBR {cbr:g}; supported CBRs: {', '.join(supported)}")


def _deepjscc_factory(shape, cbr, seed=0, name="deepjscc", link_channel="awgn", design_snr_db=10.0):
    from diffcomm import zoo
    from diffcomm.channels import parse_cbr
    from diffcomm.transmit.deepjscc import DeepJSCCEncoder

    cbr = parse_cbr(cbr) if isinstance(cbr, str) else float(cbr)
    variant = name.split("-", 1)[1] if "-" in name else None
    if variant not in (None, "awgn", "rayleigh"):
        raise DiffcommError(f"unknown encoder {name!r}; use deepjscc, deepjscc-awgn or deepjscc-rayleigh")
    model_name = jscc_model_name(link_channel, cbr, variant)
    model = zoo.load(model_name)
    cfg = model.config
    if tuple(shape) != (cfg.in_channels, cfg.image_size, cfg.image_size):
        raise DiffcommError(f"{model_name} codes {cfg.in_channels}x{cfg.image_size}x{cfg.image_size} images, "
                            f"got {'x'.join(map(str, shape))}; use --encoder gaussian or downsample for other sizes")
    return DeepJSCCEncoder(model, design_snr_db, name=model_name)


def _register_encoders() -> None:
    from diffcomm.transmit import ENCODERS, register_encoder

    if "deepjscc" not in ENCODERS:
        register_encoder("deepjscc", _deepjscc_factory)
        register_encoder("deepjscc-*", _deepjscc_factory)


def encoder_names() -> list[str]:
    _register_encoders()
    from diffcomm.transmit import encoder_names as names

    return [n for n in names() if not n.endswith("*")] + ["deepjscc-awgn", "deepjscc-rayleigh"]


def build_link(encoder: str, shape: tuple[int, int, int], cbr: float | str, channel: str = "awgn",
               snr_db: float = 10.0, csi: str = "perfect", n_pilots: int = 0, seed: int = 0,
               pilots_in_budget: bool = False):
    """Encoder by name + :class:`diffcomm.link.Link`."""
    from diffcomm.link import make_link

    _register_encoders()
    opts: dict[str, Any] = {}
    if encoder.startswith("deepjscc"):
        name = channel if isinstance(channel, str) else getattr(channel, "name", "awgn")
        opts = {"link_channel": name, "design_snr_db": float(snr_db)}
    return make_link(encoder, shape, cbr, channel=channel, snr_db=snr_db, csi=csi, n_pilots=n_pilots,
                     pilots_in_budget=pilots_in_budget, seed=seed, **opts)


ENCODER_KINDS = {"gaussian": "linear", "downsample": "linear"}
DEFAULT_PRIORS = {(1, 28, 28): ("fmnist-prior", "fashion-mnist")}
GAUSSIAN_FIT_IMAGES = 10_000  # training images the Gaussian prior of "gaussian"-prior receivers is fitted to


def encoder_kind(encoder: str) -> str:
    """Link kind of an encoder name before building it: ``linear``, ``jscc`` or ``nonlinear``."""
    if encoder.startswith("deepjscc"):
        return "jscc"
    return ENCODER_KINDS.get(encoder, "nonlinear")


def check_receiver(receiver: str, encoder: str, csi: str = "perfect") -> ReceiverSpec:
    """Validate a receiver name against an encoder and CSI mode before any work starts."""
    spec = get_spec(receiver)
    spec.check_link(encoder_kind(encoder), csi)
    return spec


def prior_names(spec: ReceiverSpec, shape: tuple[int, ...]) -> list[str]:
    """Shipped models the receiver's default prior needs for images of ``shape`` (for pre-flight checks)."""
    if spec.prior == "denoiser":
        name = DEFAULT_PRIORS.get(tuple(shape))
        if name is None:
            shipped = ", ".join("x".join(map(str, k)) for k in DEFAULT_PRIORS)
            raise DiffcommError(f"receiver {spec.name} needs a diffusion prior for {'x'.join(map(str, shape))} images "
                                f"and none is shipped (shipped: {shipped}); pass prior=... or use a receiver "
                                f"without a prior")
        return [name[0]]
    return []


_GAUSSIAN_CACHE: dict[tuple, Any] = {}


def default_prior(spec: ReceiverSpec, shape: tuple[int, ...], dataset: str | None = None):
    """The prior a receiver gets when none is passed, by its prior kind (None when it takes none).

    ``"denoiser"``: the shipped diffusion prior for the image shape; ``"gaussian"``: a Gaussian fitted
    to the first :data:`GAUSSIAN_FIT_IMAGES` training images of ``dataset`` (default: the dataset of
    the shipped prior for that shape), cached per process.
    """
    if spec.prior is None:
        return None
    known = DEFAULT_PRIORS.get(tuple(shape))
    if spec.prior == "denoiser":
        from diffcomm import zoo

        return zoo.load(prior_names(spec, shape)[0])
    dataset = dataset or (known[1] if known else None)
    if dataset is None:
        raise DiffcommError(f"receiver {spec.name} fits a Gaussian prior to training images, but no dataset of "
                            f"{'x'.join(map(str, shape))} images is known; pass prior=training images")
    key = (dataset, tuple(shape))
    if key not in _GAUSSIAN_CACHE:
        from diffcomm.data import get_dataset
        from diffcomm.receivers.linear import GaussianPrior, fit_gaussian_prior

        images = get_dataset(dataset, "train").images[:GAUSSIAN_FIT_IMAGES]
        if tuple(images.shape[1:]) != tuple(shape):
            raise DiffcommError(f"{dataset} images are {'x'.join(map(str, images.shape[1:]))}, the link codes "
                                f"{'x'.join(map(str, shape))}; pass prior=training images of that shape")
        mean, cov = fit_gaussian_prior(images)
        _GAUSSIAN_CACHE[key] = GaussianPrior(mean, cov, f"Gaussian fitted to the first {len(images)} {dataset} "
                                                        f"train images")
    return _GAUSSIAN_CACHE[key]


def get_receiver(name: str):
    """The registered receiver function ``name``."""
    return get_spec(name).fn


def decode(receiver: str, link, rx, prior=None, generator: torch.Generator | None = None,
           dataset: str | None = None, **options: Any) -> ReceiverResult:
    """Run registered receiver ``receiver`` on ``rx`` with checked ``options``.

    The link kind and CSI are checked against the receiver's capabilities, options against its
    declared types and ranges (one-line errors, before any work), and the default prior of its prior
    kind is provided when ``prior`` is None (:func:`default_prior`).
    """
    spec = get_spec(receiver)
    spec.check_link(link.kind, link.csi)
    checked = spec.validate(options)
    if prior is None:
        prior = default_prior(spec, link.shape, dataset)
    return spec.fn(link, rx, prior, generator=generator, **checked)


def score(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image PSNR and SSIM (library-backed, :mod:`diffcomm.metrics`)."""
    from diffcomm.metrics import psnr, ssim

    return {"psnr": psnr(x_hat, x), "ssim": ssim(x_hat, x)}
