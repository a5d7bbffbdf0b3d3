"""Contract tests over every registered receiver (deepinv's ``test_physics.py`` pattern).

One list — the registry — and the same checks for each entry: output shape, dtype and range, the
NFE it reports equals the prior calls it made, determinism for a given generator, one-line errors
for NaN or wrongly shaped ``y``, missing CSI and an incompatible link, every declared option
validated, every sampler runs, and quality non-decreasing in SNR from −10 to 60 dB.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest
import torch

from diffcomm import zoo
from diffcomm.data import get_dataset
from diffcomm.errors import DiffcommError
from diffcomm.pipeline import build_link, decode
from diffcomm.receivers import RECEIVERS
from diffcomm.receivers.base import Option, get_spec
from diffcomm.receivers.guidance import SAMPLERS

NAMES = sorted(RECEIVERS)
FEW_STEPS = 3


@pytest.fixture(scope="module")
def prior():
    return zoo.load("fmnist-prior")


@pytest.fixture(scope="module")
def images():
    return get_dataset("fashion-mnist", "test").images[:8]


# prior kinds whose receivers call a network (the NFE they report must equal the calls they made)
NETWORK_PRIORS = ("denoiser", "latent")


def prior_of(spec, prior):
    """The prior a receiver of ``spec``'s kind takes: the model it is built for (its ``default_priors``,
    e.g. a conditional or bridge network), the pixel prior, the shipped latent prior, or None."""
    if spec.prior == "latent":
        return zoo.load("fmnist-latent-prior")
    if (1, 28, 28) in spec.default_priors:
        return zoo.load(spec.default_priors[(1, 28, 28)])
    return prior if spec.prior == "denoiser" else None


def encoder_for(spec) -> str:
    return "downsample" if spec.link == "linear" else "deepjscc"


def csi_for(spec) -> str:
    return "none" if spec.csi == "none" else "perfect"


def fast_options(spec) -> dict:
    return {"steps": FEW_STEPS} if "steps" in spec.options else {}


class CallCounter:
    """A prior that counts its calls and the rows it evaluated (to check the NFE a receiver reports: network
    evaluations per image, so a classifier-free-guidance call on 2B rows counts twice)."""

    def __init__(self, prior):
        self.prior, self.calls, self.rows = prior, 0, 0

    def __call__(self, x, sigma, class_labels=None, **kwargs):
        self.calls += 1
        self.rows += x.shape[0]
        return self.prior(x, sigma, class_labels, **kwargs)

    def __getattr__(self, name):
        return getattr(self.prior, name)


def setup(name: str, x: torch.Tensor, snr: float = 10.0, channel: str = "rayleigh"):
    spec = get_spec(name)
    link = build_link(encoder_for(spec), (1, 28, 28), "1/16", channel, snr, csi=csi_for(spec))
    rx = link.transmit(x, generator=torch.Generator().manual_seed(0))
    return spec, link, rx


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_range_nfe_and_determinism(name, prior, images):
    spec, link, rx = setup(name, images[:2])
    counted = CallCounter(prior_of(spec, prior)) if spec.prior in NETWORK_PRIORS else None
    res = decode(name, link, rx, prior=counted, generator=torch.Generator().manual_seed(1), **fast_options(spec))
    assert res.x_hat.shape == (2, 1, 28, 28) and res.x_hat.dtype == torch.float32
    assert torch.isfinite(res.x_hat).all() and res.x_hat.min() >= 0 and res.x_hat.max() <= 1
    assert isinstance(res.nfe, int) and res.seconds >= 0
    if spec.prior in NETWORK_PRIORS:
        assert res.nfe * 2 == counted.rows > 0        # two images
    else:
        assert res.nfe == 0
    again = decode(name, link, rx, prior=counted, generator=torch.Generator().manual_seed(1), **fast_options(spec))
    assert torch.equal(res.x_hat, again.x_hat)


@pytest.mark.parametrize("name", NAMES)
def test_bad_received_signal_gives_one_line_errors(name, prior, images):
    spec, link, rx = setup(name, images[:2])
    p = prior_of(spec, prior)
    nan_y = rx.y.clone()
    nan_y[0, 0] = complex(math.nan, 0.0)
    for bad, message in [(dataclasses.replace(rx, y=nan_y), "NaN"),
                         (dataclasses.replace(rx, y=rx.y[:, :-1]), "shape"),
                         (dataclasses.replace(rx, y=rx.y.real), "complex")]:
        with pytest.raises(DiffcommError, match=message) as err:
            decode(name, link, bad, prior=p, **fast_options(spec))
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_missing_csi_and_incompatible_links_are_refused(name, prior, images):
    spec, link, rx = setup(name, images[:2])
    p = prior_of(spec, prior)
    if spec.csi == "required":
        with pytest.raises(DiffcommError, match="CSI|channel state") as err:
            spec.fn(link, dataclasses.replace(rx, h_hat=None), p, **fast_options(spec))
        assert "\n" not in str(err.value)
    other = {"linear": "deepjscc", "jscc": "downsample"}.get(spec.link)
    csi = "perfect" if spec.csi == "none" else "none"  # the CSI mode the receiver does not take
    links = [(encoder_for(spec), csi)] + ([(other, csi_for(spec))] if other else [])
    for encoder, mode in links:
        wrong = build_link(encoder, (1, 28, 28), "1/16", "rayleigh", 10.0, csi=mode)
        wrong_rx = wrong.transmit(images[:2], generator=torch.Generator().manual_seed(0))
        with pytest.raises(DiffcommError) as err:
            decode(name, wrong, wrong_rx, prior=p, **fast_options(spec))
        assert "\n" not in str(err.value) and name in str(err.value)


def bad_value(option: Option):
    if option.kind is bool:
        return 1
    if option.kind is str:
        return "no-such-choice"
    if option.high is not None:
        return option.high * 2 + 1
    return math.nan


@pytest.mark.parametrize("name", NAMES)
def test_every_declared_option_is_validated_with_a_default_that_passes(name):
    spec = get_spec(name)
    defaults = spec.defaults()
    assert spec.validate({k: v for k, v in defaults.items() if v is not None}) is not None
    for option_name, option in spec.options.items():
        with pytest.raises(DiffcommError, match=f"option {option_name}") as err:
            spec.validate({option_name: bad_value(option)})
        assert "\n" not in str(err.value)
    with pytest.raises(DiffcommError, match="no option"):
        spec.validate({"no_such_option": 1})


@pytest.mark.parametrize("name", [n for n in NAMES if "sampler" in RECEIVERS[n].options])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs_every_posterior_method(name, sampler, prior, images):
    spec, link, rx = setup(name, images[:2], channel="awgn")
    res = decode(name, link, rx, prior=prior_of(spec, prior), generator=torch.Generator().manual_seed(0),
                 sampler=sampler, **fast_options(spec))
    assert torch.isfinite(res.x_hat).all() and res.x_hat.shape == (2, 1, 28, 28) and res.nfe > 0


def test_no_receiver_name_is_special_cased_outside_its_module_and_the_registry():
    src = Path(__file__).resolve().parents[2] / "src" / "diffcomm"
    own = {name: Path(spec.fn.__wrapped__.__code__.co_filename).resolve() for name, spec in RECEIVERS.items()}
    registry = {src / "receivers" / "__init__.py", src / "receivers" / "base.py"}
    offenders = []
    for path in src.rglob("*.py"):
        text = path.read_text()
        for name, module in own.items():
            if path.resolve() in registry or path.resolve() == module:
                continue
            # a receiver name compared or dispatched on: == "name", in ("name", ...), get_spec("name")
            pattern = (rf"(==|!=)\s*['\"]{re.escape(name)}['\"]|in\s*[\(\[\{{][^)\]}}]*['\"]{re.escape(name)}['\"]"
                       rf"|(RECEIVERS|get_spec|get_receiver)\(?\[?\s*['\"]{re.escape(name)}['\"]")
            for match in re.finditer(pattern, text):
                line = text[:match.start()].count("\n") + 1
                offenders.append(f"{path.relative_to(src)}:{line}: {name}")
    assert not offenders, offenders


SNRS = [-10.0, 0.0, 10.0, 20.0, 40.0, 60.0]


@pytest.mark.parametrize("channel", ["awgn", "rayleigh"])
@pytest.mark.parametrize("name", NAMES)
def test_quality_is_non_decreasing_in_snr(name, channel, prior, images):
    """Mean PSNR over 8 images at each SNR; each step up in SNR may lose at most what the paired
    per-image differences allow at one-sided 99 % (t = 3.0 for 7 degrees of freedom), plus 0.05 dB for
    saturated points where every image is already decoded the same (zero spread)."""
    from diffcomm.metrics import psnr

    spec = get_spec(name)
    p = prior_of(spec, prior)
    options = {"steps": 6} if "steps" in spec.options else {}
    rows = []
    for snr in SNRS:
        link = build_link(encoder_for(spec), (1, 28, 28), "1/16", channel, snr, csi=csi_for(spec))
        rx = link.transmit(images, generator=torch.Generator().manual_seed(0))
        res = decode(name, link, rx, prior=p, generator=torch.Generator().manual_seed(1), **options)
        rows.append(psnr(res.x_hat, images).double())
    for lo, hi, a, b in zip(SNRS, SNRS[1:], rows, rows[1:]):
        diff = b - a
        bound = 3.0 * float(diff.std()) / math.sqrt(len(diff)) + 0.05
        assert float(diff.mean()) >= -bound - 1e-6, (name, channel, lo, hi, float(a.mean()), float(b.mean()), bound)
