"""DeepCache: interval 1 is the plain network bitwise; reuse calls equal the full network when the deep
feature is unchanged; the cache resets on a new trajectory or batch shape; samplers run on it."""

import pytest
import torch

from diffcomm.diffusion.deepcache import DeepCachePrior
from diffcomm.diffusion.precond import EDMDenoiser
from diffcomm.diffusion.unet import UNet
from diffcomm.errors import DiffcommError

torch.set_num_threads(1)


def tiny_prior(num_res_blocks: int = 1) -> EDMDenoiser:
    torch.manual_seed(0)
    prior = EDMDenoiser(UNet(in_channels=1, base_channels=8, channel_mults=(1, 2, 2), num_res_blocks=num_res_blocks,
                             attention_levels=(2,), num_classes=10, emb_dim=32)).eval()
    for p in prior.parameters():  # a non-trivial network (zero-initialised output layers otherwise)
        p.data.normal_(0, 0.2, generator=torch.Generator().manual_seed(1))
    return prior


def test_interval_one_is_the_plain_network():
    prior = tiny_prior()
    cached = DeepCachePrior(prior, interval=1)
    x = torch.randn(3, 1, 28, 28)
    for sigma in (5.0, 2.0, 1.0):
        assert torch.equal(cached(x, torch.tensor(sigma)), prior(x, torch.tensor(sigma)))
    assert cached.full_calls == 3 and cached.cached_calls == 0


@pytest.mark.parametrize("num_res_blocks", [1, 2])
def test_a_reuse_call_at_the_same_input_equals_the_full_network(num_res_blocks):
    """Reusing the deep feature of the same (x, σ) changes nothing: the shallow path is recomputed exactly."""
    prior = tiny_prior(num_res_blocks)
    cached = DeepCachePrior(prior, interval=2)
    x = torch.randn(2, 1, 28, 28)
    full = cached(x, torch.tensor(1.0))
    again = cached(x, torch.tensor(1.0))
    assert cached.cached_calls == 1
    torch.testing.assert_close(again, full, rtol=1e-5, atol=1e-5)
    # at another input the reuse call differs from the full network (the deep path was skipped)
    cached.reset()
    cached(x, torch.tensor(1.0))
    y = x + 0.5 * torch.randn_like(x)
    assert not torch.allclose(cached(y, torch.tensor(1.0)), prior(y, torch.tensor(1.0)), atol=1e-4)


def test_cache_resets_on_a_new_trajectory_and_a_new_shape():
    prior = tiny_prior()
    cached = DeepCachePrior(prior, interval=3)
    x = torch.randn(2, 1, 28, 28)
    cached(x, torch.tensor(5.0))
    cached(x, torch.tensor(2.0))
    assert (cached.full_calls, cached.cached_calls) == (1, 1)
    cached(x, torch.tensor(80.0))      # σ rose: a new trajectory, full evaluation
    assert cached.full_calls == 2
    cached(torch.randn(4, 1, 28, 28), torch.tensor(1.0))   # another batch: full evaluation
    assert cached.full_calls == 3
    assert not hasattr(prior.net, "deep_cache")           # nothing left on the shared network


def test_samplers_run_on_it_with_fewer_full_evaluations():
    from diffcomm.diffusion.sampling import sample_prior

    prior = tiny_prior()
    cached = DeepCachePrior(prior, interval=3)
    x, nfe = sample_prior(cached, 4, steps=6, seed=0)
    assert x.shape == (4, 1, 28, 28) and torch.isfinite(x).all() and nfe == 11
    assert cached.full_calls == 4 and cached.cached_calls == 7


def test_bad_arguments():
    with pytest.raises(DiffcommError, match="interval"):
        DeepCachePrior(tiny_prior(), interval=0)
    with pytest.raises(DiffcommError, match="U-Net"):
        DeepCachePrior(lambda x, s: x, interval=2)
