"""Semantic-only transmission (diffcomm.scenarios.semantic_only): failed labels are unconditional samples, the
NFE it reports is the network evaluations it makes, the cache is exact, and bad input gets one-line errors."""

import pytest
import torch

from diffcomm import zoo
from diffcomm.errors import DiffcommError
from diffcomm.scenarios.semantic_only import evaluate_semantic_only, generate_from_labels, nfe_per_image


@pytest.fixture(scope="module")
def prior():
    return zoo.load("fmnist-prior")


class Counting:
    """Counts network evaluations per image (CFG evaluates a batch of 2B in one call)."""

    def __init__(self, prior):
        self.prior, self.rows = prior, 0

    def __call__(self, x, sigma, class_labels=None):
        self.rows += x.shape[0]
        return self.prior(x, sigma, class_labels)

    def __getattr__(self, name):
        return getattr(self.prior, name)


@pytest.mark.parametrize("w", [0.0, 1.0])
def test_nfe_per_image_is_the_evaluations_made(prior, w):
    counted = Counting(prior)
    generate_from_labels(counted, torch.tensor([1, 2, 3]), cfg_weight=w, steps=3, seeds=torch.arange(3))
    assert counted.rows / 3 == nfe_per_image(3, w) == (5 if w == 0 else 10)


def test_decoding_failures_are_unconditional_samples(prior):
    seeds = torch.tensor([5, 5])
    failed = generate_from_labels(prior, torch.tensor([10, 13]), cfg_weight=2.0, steps=3, seeds=seeds)
    uncond = generate_from_labels(prior, torch.tensor([10, 10]), cfg_weight=0.0, steps=3, seeds=seeds)
    assert (failed - uncond).abs().max() < 2e-3     # CFG with the null class on both sides (batch-size rounding)
    labelled = generate_from_labels(prior, torch.tensor([3, 3]), cfg_weight=2.0, steps=3, seeds=seeds)
    assert (labelled - failed).abs().max() > 0.05


def test_per_image_seeds_make_an_image_independent_of_its_batch(prior):
    together = generate_from_labels(prior, torch.tensor([0, 7, 9]), steps=3, seeds=torch.tensor([4, 8, 15]))
    alone = generate_from_labels(prior, torch.tensor([7]), steps=3, seeds=torch.tensor([8]))
    assert torch.allclose(together[1], alone[0], atol=1e-3)


def test_at_high_snr_every_label_arrives_and_accuracy_is_scored_against_the_true_labels():
    from diffcomm.data import get_dataset

    d = get_dataset("fashion-mnist", "test")
    x, labels = d.images[:8], d.labels[:8]
    cache: dict = {}
    rec = evaluate_semantic_only(x, labels, snr_db=20.0, steps=2, prior_name="fmnist-prior", cache=cache)
    m = rec["metrics"]
    assert m["label_error_rate"] == 0 and m["bit_error_rate"] == 0 and rec["channel_uses"] == 8
    assert rec["cbr"] == 8 / 784 and rec["nfe"] == nfe_per_image(2, 1.0) and len(cache) == 8
    from diffcomm.metrics.classifier import predict

    x_hat = torch.stack([cache[(i, int(labels[i]))] for i in range(8)])
    expected = float((predict(zoo.load("fmnist-classifier"), x_hat)[0].argmax(1) == labels).float().mean())
    assert m["accuracy"] == expected
    again = evaluate_semantic_only(x, labels, snr_db=20.0, steps=2, prior_name="fmnist-prior", cache=cache)
    assert again["images_generated_here"] == 0 and again["metrics"]["accuracy"] == m["accuracy"]


@pytest.mark.parametrize("labels, kw, message", [
    (torch.tensor([0.5]), {}, "integer"),
    (torch.tensor([[1]]), {}, "shape"),
    (torch.tensor([-1]), {}, ">= 0"),
    (torch.tensor([1]), {"cfg_weight": -1.0}, "cfg_weight"),
    (torch.tensor([1]), {"steps": 0}, "steps"),
])
def test_bad_input_gives_one_line_errors(prior, labels, kw, message):
    with pytest.raises(DiffcommError, match=message) as err:
        generate_from_labels(prior, labels, **kw)
    assert "\n" not in str(err.value)


def test_an_unconditional_prior_and_an_absurd_snr_are_refused():
    from diffcomm.diffusion.precond import EDMDenoiser
    from diffcomm.diffusion.unet import UNet

    with pytest.raises(DiffcommError, match="class-conditional"):
        generate_from_labels(EDMDenoiser(UNet(base_channels=8, channel_mults=(1,), attention_levels=())),
                             torch.tensor([1]))
    with pytest.raises(DiffcommError, match="snr_db"):
        evaluate_semantic_only(torch.zeros(1, 1, 28, 28), torch.tensor([1]), snr_db=float("nan"))
