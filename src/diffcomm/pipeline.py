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

# shipped DeepJSCC models by (training channel, CBR): grayscale (1 x 28 x 28, Fashion-MNIST) and
# colour (3 x 32 x 32, natural-photo patches); jscc_model_name picks the table by image channels.
# Issue 16: models fine-tuned for changed links (OFDM TDL-A, MIMO 2x2, transmitter clipping); a link over OFDM
# or MIMO gets its own model where one is shipped for the CBR, the clipping-trained one only by name
# (deepjscc-rayleigh-clip).
JSCC_MODELS = {("awgn", 1 / 16): "fmnist-deepjscc-awgn-cbr16", ("rayleigh", 1 / 16): "fmnist-deepjscc-rayleigh-cbr16",
               ("awgn", 1 / 8): "fmnist-deepjscc-awgn-cbr8", ("rayleigh", 1 / 8): "fmnist-deepjscc-rayleigh-cbr8",
               ("ofdm", 1 / 16): "fmnist-deepjscc-ofdm-cbr16", ("mimo", 1 / 16): "fmnist-deepjscc-mimo-cbr16",
               ("rayleigh-clip", 1 / 16): "fmnist-deepjscc-rayleigh-clip-cbr16"}
JSCC_VARIANTS = ("awgn", "rayleigh", "ofdm", "mimo", "rayleigh-clip")   # encoder names deepjscc-VARIANT
# The colour models are trained over AWGN only (recipes for Rayleigh-trained ones exist, untrained): over a
# fading link they decode the equalised symbols with the link's CSI, like the AWGN variant of a grayscale model.
JSCC_MODELS_RGB = {("awgn", 1 / 16): "natural-deepjscc-awgn-cbr16", ("awgn", 1 / 48): "natural-deepjscc-awgn-cbr48"}


def jscc_model_name(channel: str, cbr: float, variant: str | None = None, channels: int = 1) -> str:
    """Zoo name of the DeepJSCC for a channel, CBR and image channels (Rician uses the Rayleigh-trained model).

    ``channels=1``: the Fashion-MNIST models; ``channels=3``: the colour natural-photo models.

    Example:
        >>> jscc_model_name("rayleigh", 1 / 48, channels=3)  # colour models: trained over AWGN only
        'natural-deepjscc-awgn-cbr48'
    """
    if channels not in (1, 3):
        raise DiffcommError(f"shipped DeepJSCC models code 1- or 3-channel images, got {channels} channels")
    table = JSCC_MODELS if channels == 1 else JSCC_MODELS_RGB
    own = any(ch == channel and abs(c - cbr) < 1e-9 for ch, c in table) and channel in ("ofdm", "mimo")
    trained = variant or (channel if own else "awgn" if channel == "awgn" else "rayleigh")
    for (ch, c), name in table.items():
        if ch == trained and abs(c - cbr) < 1e-9:
            return name
    if channels == 3 and variant is None:  # no colour model trained over this channel: the AWGN-trained one
        for (ch, c), name in table.items():
            if ch == "awgn" and abs(c - cbr) < 1e-9:
                return name
    supported = sorted({f"1/{round(1 / c)}" for _, c in table}, key=lambda t: int(t[2:]))
    raise DiffcommError(f"no shipped DeepJSCC for CBR {cbr:g} ({'colour' if channels == 3 else 'grayscale'} "
                        f"images); supported CBRs: {', '.join(supported)}")


def _deepjscc_factory(shape, cbr, seed=0, name="deepjscc", link_channel="awgn", design_snr_db=10.0):
    from diffcomm import zoo
    from diffcomm.channels import parse_cbr
    from diffcomm.transmit.deepjscc import DeepJSCCEncoder

    cbr = parse_cbr(cbr) if isinstance(cbr, str) else float(cbr)
    variant = name.split("-", 1)[1] if "-" in name else None
    if variant is not None and variant not in JSCC_VARIANTS:
        raise DiffcommError(f"unknown encoder {name!r}; use deepjscc or deepjscc-VARIANT with VARIANT one of "
                            f"{', '.join(JSCC_VARIANTS)}")
    model_name = jscc_model_name(link_channel, cbr, variant, channels=3 if shape[0] == 3 else 1)
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

    return [n for n in names() if not n.endswith("*")] + [f"deepjscc-{v}" for v in JSCC_VARIANTS]


def build_link(encoder: str, shape: tuple[int, int, int], cbr: float | str, channel: str = "awgn",
               snr_db: float = 10.0, csi: str = "perfect", n_pilots: int = 0, seed: int = 0,
               pilots_in_budget: bool = False, pilot_estimator: str = "lmmse", assumed_snr_db: float | None = None):
    """Encoder by name + :class:`diffcomm.link.Link` (``assumed_snr_db``: the SNR the receiver is told)."""
    from diffcomm.link import make_link

    _register_encoders()
    opts: dict[str, Any] = {}
    if encoder.startswith("deepjscc"):
        name = channel if isinstance(channel, str) else getattr(channel, "name", "awgn")
        opts = {"link_channel": name, "design_snr_db": float(snr_db)}
    return make_link(encoder, shape, cbr, channel=channel, snr_db=snr_db, csi=csi, n_pilots=n_pilots,
                     pilot_estimator=pilot_estimator, pilots_in_budget=pilots_in_budget, seed=seed,
                     assumed_snr_db=assumed_snr_db, **opts)


ENCODER_KINDS = {"gaussian": "linear", "downsample": "linear"}
DEFAULT_PRIORS = {(1, 28, 28): ("fmnist-prior", "fashion-mnist"), (3, 32, 32): ("natural-prior", "natural-patches")}
GAUSSIAN_FIT_IMAGES = 10_000  # training images the Gaussian prior of "gaussian"-prior receivers is fitted to
# The shipped latent diffusion prior (autoencoder + latent EDM denoiser) per image shape, for "latent"-prior receivers.
DEFAULT_LATENT_PRIORS = {(1, 28, 28): "fmnist-latent-prior"}


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
        if tuple(shape) in spec.default_priors:  # the prior the receiver is built for (its registration)
            return [spec.default_priors[tuple(shape)]]
        name = DEFAULT_PRIORS.get(tuple(shape))
        if name is None:
            shipped = ", ".join("x".join(map(str, k)) for k in DEFAULT_PRIORS)
            raise DiffcommError(f"receiver {spec.name} needs a diffusion prior for {'x'.join(map(str, shape))} images "
                                f"and none is shipped (shipped: {shipped}); pass prior=... or use a receiver "
                                f"without a prior")
        return [name[0]]
    if spec.prior == "latent":
        latent = DEFAULT_LATENT_PRIORS.get(tuple(shape))
        if latent is None:
            shipped = ", ".join("x".join(map(str, k)) for k in DEFAULT_LATENT_PRIORS)
            raise DiffcommError(f"receiver {spec.name} needs a latent diffusion prior for {'x'.join(map(str, shape))} "
                                f"images and none is shipped (shipped: {shipped}); pass prior=a LatentPrior")
        return [latent]
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
    if spec.prior == "latent":
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


def uses_default_prior(spec: ReceiverSpec, shape: tuple[int, ...], prior) -> bool:
    """True when ``prior`` is None or the very shipped model :func:`default_prior` gives for ``shape``."""
    if prior is None:
        return True
    if spec.prior != "denoiser" or (tuple(shape) not in DEFAULT_PRIORS and tuple(shape) not in spec.default_priors):
        return False
    from diffcomm import zoo

    return prior is zoo._CACHE.get(prior_names(spec, shape)[0])  # zoo.load caches; never loads here


MAX_POSTERIOR_SAMPLES = 1024


def check_posterior_samples(value: Any, what: str = "posterior_samples") -> int | None:
    """``S`` as an int >= 2, or None for "off" (None or 1); anything else is a one-line DiffcommError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_POSTERIOR_SAMPLES:
        raise DiffcommError(f"{what} must be an integer from 1 (off) to {MAX_POSTERIOR_SAMPLES} posterior samples "
                            f"per image, got {value!r}")
    return None if value == 1 else value


def default_uncertainty_classifier(shape: tuple[int, ...]):
    """The shipped classifier that scores semantic agreement for images of ``shape`` (1×28×28
    Fashion-MNIST: ``fmnist-classifier``), or None (spread only)."""
    from diffcomm import zoo

    if tuple(shape) != (1, 28, 28) or "fmnist-classifier" not in zoo.list_models():
        return None
    return zoo.load("fmnist-classifier")


def semantic_guidance(shape: tuple[int, ...], lam: float):
    """Classifier guidance of weight ``lam`` with the shipped classifier for images of ``shape`` (the ``semantic``
    option of dps, hifi and blind through :func:`decode` and ``--option semantic=λ``), towards the classifier's own
    decision on the current estimate (:class:`diffcomm.receivers.semantic.SemanticGuidance`, ``labels=None``)."""
    from diffcomm.receivers.semantic import SemanticGuidance

    classifier = default_uncertainty_classifier(shape)
    if classifier is None:
        raise DiffcommError(f"option semantic needs a shipped classifier for images of shape {tuple(shape)} (there is "
                            f"one for 1x28x28); call the receiver with semantic=SemanticGuidance(your_classifier, lam)")
    return SemanticGuidance(classifier, lam)


def _with_uncertainty(result: ReceiverResult, batch: int, n_samples: int, classifier,
                      classifier_name: str | None) -> ReceiverResult:
    """Split the batched result of ``batch × n_samples`` rows: x_hat = each image's first sample,
    ``uncertainty`` = the per-image record (:func:`diffcomm.metrics.uncertainty.uncertainty`)."""
    from diffcomm.metrics.uncertainty import uncertainty

    samples = result.x_hat.reshape(batch, n_samples, *result.x_hat.shape[1:])
    scored = samples.detach()
    params = next(iter(classifier.parameters()), None) if isinstance(classifier, torch.nn.Module) else None
    if params is not None:
        scored = scored.to(params.device)
    with torch.no_grad():
        u = uncertainty(scored, classifier)
    result.x_hat = samples[:, 0].contiguous()
    result.uncertainty = {"samples": n_samples, "spread": u.spread, "agreement": u.agreement,
                          "classes": u.classes, "pixel_spread": u.pixel_spread, "classifier": classifier_name}
    return result


def decode(receiver: str, link, rx, prior=None, generator: torch.Generator | None = None,
           dataset: str | None = None, calibration: bool = True, posterior_samples: int | None = None,
           uncertainty_classifier: Any = "auto", **options: Any) -> ReceiverResult:
    """Run registered receiver ``receiver`` on ``rx`` with checked ``options``.

    The link kind and CSI are checked against the receiver's capabilities, options against its
    declared types and ranges (one-line errors, before any work), and the default prior of its prior
    kind is provided when ``prior`` is None (:func:`default_prior`).

    **Calibrated defaults**: with the default prior (``prior`` None or the shipped model it stands
    for) and ``calibration`` True, the strength options not in ``options`` take the values tuned for
    this receiver, link and the nearest calibrated SNR (:func:`diffcomm.calibration.calibrated_options`;
    options given here always win). ``extras["options_used"]`` holds every option's value,
    ``extras["options_source"]`` where each came from (``user``, ``calibrated`` or ``default``) and
    ``extras["calibrated"]`` the calibrated ones with the SNR and steps of their entry.

    **Posterior samples** (``posterior_samples=S``, S >= 2; None or 1: off): the receiver runs once on
    every frame repeated S times (:func:`diffcomm.metrics.uncertainty.replicate_received`, one batched
    call); ``x_hat`` is each image's *first* sample (itself a posterior sample, so metrics stay comparable
    with S = 1), ``nfe`` stays per sample (an image costs S × nfe), ``seconds`` covers all samples, per-row
    ``extras`` of the receiver (blind's ``h_hat``, cddm's ``start_sigma``) keep their B × S rows, and
    ``result.uncertainty`` holds ``samples`` (S), per-image ``spread`` (B,) (rms of the per-pixel std over
    the samples), ``pixel_spread`` (B, C, H, W), ``agreement`` (B,) (the fraction of samples the classifier
    puts in the modal class) and ``classes`` (B, S), both None without a classifier. ``uncertainty_classifier``:
    ``"auto"`` (the shipped Fashion-MNIST classifier for 1×28×28 images, none otherwise —
    :func:`default_uncertainty_classifier`), None (spread only) or a network mapping pixels to logits.
    Deterministic receivers (pinv, lmmse, the DeepJSCC decoder) give spread 0 and agreement 1: their
    "samples" are copies, so the record says nothing about their errors.
    """
    spec = get_spec(receiver)
    spec.check_link(link.kind, link.csi)
    checked = spec.validate(options)
    n_samples = check_posterior_samples(posterior_samples)
    if n_samples is not None:
        from diffcomm.metrics.uncertainty import replicate_received

        classifier, classifier_name = uncertainty_classifier, "user"
        if isinstance(classifier, str):
            if classifier != "auto":
                raise DiffcommError(f"uncertainty_classifier must be 'auto', None or a classifier network, "
                                    f"got {classifier!r}")
            classifier = default_uncertainty_classifier(link.shape)
            classifier_name = "fmnist-classifier"
        if classifier is None:
            classifier_name = None
        batch, rx = rx.batch, replicate_received(rx, n_samples)
    calibrated: dict[str, dict[str, Any]] = {}
    if calibration and spec.tunable() and uses_default_prior(spec, link.shape, prior):
        from diffcomm.calibration import link_calibration

        calibrated = link_calibration(spec, link, checked)
    if prior is None:
        prior = default_prior(spec, link.shape, dataset)
    filled = {name: c["value"] for name, c in calibrated.items()}
    call = dict(checked)
    if isinstance(call.get("semantic"), float) and call["semantic"] > 0:  # the option form: a weight λ
        call["semantic"] = semantic_guidance(link.shape, call["semantic"])
    result = spec.fn(link, rx, prior, generator=generator, **filled, **call)
    used = {**spec.defaults(), **filled, **checked}
    result.extras["options_used"] = used
    result.extras["options_source"] = {name: "user" if name in checked else "calibrated" if name in filled
                                       else "default" for name in used}
    result.extras["calibrated"] = calibrated
    if n_samples is not None:
        result = _with_uncertainty(result, batch, n_samples, classifier, classifier_name)
    return result


def score(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image PSNR and SSIM (library-backed, :mod:`diffcomm.metrics`)."""
    from diffcomm.metrics import psnr, ssim

    return {"psnr": psnr(x_hat, x), "ssim": ssim(x_hat, x)}
