"""One end-to-end transmission, by names: build the link, run a receiver, score the result.

This is the single place where encoder names, receiver names and shipped models meet; the CLI
(``diffcomm transmit``), the evaluation runner and the demo all call it.

Encoders: ``gaussian``, ``downsample`` (linear, any image size) and ``deepjscc`` (the shipped
Fashion-MNIST DeepJSCC for the link's channel and CBR; ``deepjscc-awgn`` / ``deepjscc-rayleigh``
pick the training channel explicitly). Receivers: see :data:`RECEIVERS`.

Example:
    >>> link = build_link("gaussian", (1, 28, 28), "1/16", "awgn", 10.0)
    >>> rx = link.transmit(torch.rand(2, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    >>> decode("pinv", link, rx).x_hat.shape
    torch.Size([2, 1, 28, 28])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from diffcomm.errors import DiffcommError
from diffcomm.receivers.base import ReceiverResult, Timer


@dataclass(frozen=True)
class ReceiverSpec:
    name: str
    module: str
    function: str
    needs_prior: bool = True
    needs_linear: bool = False
    needs_jscc: bool = False
    description: str = ""


RECEIVERS: dict[str, ReceiverSpec] = {spec.name: spec for spec in [
    ReceiverSpec("pinv", "diffcomm.receivers.linear", "pinv_receiver", False, True, False,
                 "exact pseudo-inverse (linear links)"),
    ReceiverSpec("lmmse", "diffcomm.receivers.linear", "lmmse_receiver", False, True, False,
                 "Gaussian-prior LMMSE (linear links)"),
    ReceiverSpec("deepjscc", "diffcomm.pipeline", "jscc_decoder_receiver", False, False, True,
                 "the DeepJSCC decoder after MMSE equalisation"),
    ReceiverSpec("dps", "diffcomm.receivers.dps", "dps_receiver", True, False, False,
                 "DiffCom: DPS through the (nonlinear) link"),
    ReceiverSpec("hifi", "diffcomm.receivers.hifi", "hifi_receiver", True, False, True,
                 "HiFi-DiffCom: DPS + confirming term + SNR-matched start"),
    ReceiverSpec("blind", "diffcomm.receivers.blind", "blind_receiver", True, False, False,
                 "pilot-free joint channel/image estimation"),
    ReceiverSpec("pigdm", "diffcomm.receivers.pigdm", "pigdm_receiver", True, True, False,
                 "ΠGDM pseudo-inverse guidance (linear links)"),
    ReceiverSpec("ddnm", "diffcomm.receivers.ddnm", "ddnm_receiver", True, True, False,
                 "DDNM+ null-space refinement (linear links)"),
    ReceiverSpec("diffpir", "diffcomm.receivers.diffpir", "diffpir_receiver", True, True, False,
                 "DiffPIR proximal data step (linear links)"),
    ReceiverSpec("cddm", "diffcomm.receivers.cddm", "cddm_receiver", True, True, False,
                 "CDDM-style: pseudo-inverse, then deterministic denoising from the matched level"),
]}

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


def check_receiver(receiver: str, encoder: str, csi: str = "perfect") -> ReceiverSpec:
    """Validate a receiver name against an encoder and CSI mode before any work starts."""
    if receiver not in RECEIVERS:
        raise DiffcommError(f"unknown receiver {receiver!r}; choose one of {', '.join(RECEIVERS)}")
    spec = RECEIVERS[receiver]
    linear = encoder in ("gaussian", "downsample")
    if spec.needs_linear and not linear:
        raise DiffcommError(f"receiver {receiver} needs a linear encoder (gaussian or downsample), got {encoder}")
    if spec.needs_jscc and not encoder.startswith("deepjscc"):
        raise DiffcommError(f"receiver {receiver} needs a DeepJSCC encoder (--encoder deepjscc), got {encoder}")
    if csi == "none" and receiver != "blind":
        raise DiffcommError(f"receiver {receiver} needs CSI; with --csi none use --receiver blind")
    return spec


def jscc_decoder_receiver(link, rx, prior=None, generator=None) -> ReceiverResult:
    """The DeepJSCC decoder: MMSE-equalise with ĥ, decode with the post-equalisation SNR."""
    from diffcomm.receivers.base import check_received
    from diffcomm.receivers.hifi import jscc_reconstruction

    check_received(link, rx, receiver="deepjscc")
    with Timer() as t, torch.no_grad():
        x = jscc_reconstruction(link, rx)
    return ReceiverResult(x, nfe=0, seconds=t.seconds)


def get_receiver(name: str) -> Callable[..., ReceiverResult]:
    import importlib

    spec = RECEIVERS.get(name)
    if spec is None:
        raise DiffcommError(f"unknown receiver {name!r}; choose one of {', '.join(RECEIVERS)}")
    return getattr(importlib.import_module(spec.module), spec.function)


def decode(receiver: str, link, rx, prior=None, generator: torch.Generator | None = None,
           **options: Any) -> ReceiverResult:
    """Run receiver ``receiver`` on ``rx`` (loads the shipped prior when it needs one)."""
    spec = RECEIVERS.get(receiver)
    fn = get_receiver(receiver)
    if spec.name in ("pinv",):
        with Timer() as t:
            x = fn(link, rx).clamp(0, 1)
        return ReceiverResult(x, nfe=0, seconds=t.seconds)
    if spec.name == "lmmse":
        with Timer() as t:
            x = fn(link, rx, **options).clamp(0, 1)
        return ReceiverResult(x, nfe=0, seconds=t.seconds)
    if spec.needs_prior:
        if prior is None:
            from diffcomm import zoo

            prior = zoo.load("fmnist-prior")
        return fn(link, rx, prior, generator=generator, **options)
    return fn(link, rx, generator=generator, **options)


def score(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image PSNR and SSIM (library-backed, :mod:`diffcomm.metrics`)."""
    from diffcomm.metrics import psnr, ssim

    return {"psnr": psnr(x_hat, x), "ssim": ssim(x_hat, x)}
