"""The matrix-free downsample operator (forward, adjoint, pseudo-inverse) against the dense matrix, and on a
512×512×3 photo where no dense matrix can be built."""

import pytest
import torch
import torch.nn.functional as F

from diffcomm.channels import complex_to_real, make_channel
from diffcomm.errors import DiffcommError
from diffcomm.link import Link, make_link
from diffcomm.transmit import Downsample

F64 = torch.float64
CASES = [((1, 28, 28), "1/8"),        # 2x2 windows (non-overlapping)
         ((3, 20, 30), "1/10"),       # 8x15 grid: overlapping adaptive windows
         ((1, 27, 13), "56/351")]     # 16x7 grid on odd sizes


@pytest.mark.parametrize("shape,cbr", CASES)
def test_encoder_matrix_free_methods_equal_dense(shape, cbr):
    link = make_link("downsample", shape, cbr, "awgn", 10.0)
    enc = link.encoder
    e = enc.matrix.double()
    x = torch.rand(3, *shape, generator=torch.Generator().manual_seed(0))
    v = torch.randn(3, 2 * enc.k, generator=torch.Generator().manual_seed(1), dtype=F64)
    torch.testing.assert_close(complex_to_real(enc(x)).double(), x.flatten(1).double() @ e.T, rtol=0, atol=1e-6)
    torch.testing.assert_close(enc.apply_adjoint(v), v @ e, rtol=0, atol=1e-6)
    torch.testing.assert_close(enc.pinv(v), v @ torch.linalg.pinv(e).T, rtol=0, atol=1e-6)
    torch.testing.assert_close(enc.pinv_matrix, torch.linalg.pinv(e), rtol=0, atol=1e-6)
    assert enc.rank == 2 * enc.k and enc.full_row_rank


@pytest.mark.parametrize("shape,cbr", CASES)
@pytest.mark.parametrize("channel,block", [("awgn", True), ("rayleigh", True), ("rician", False)])
def test_link_operator_matrix_free_equals_dense(shape, cbr, channel, block):
    """op(x), Mᵀv and A⁺y agree to ~1e-6 with the dense matrix/SVD path, also under per-symbol fast fading."""
    ch = make_channel(channel) if channel == "awgn" else make_channel(channel, block=block)
    link = make_link("downsample", shape, cbr, ch, 10.0)
    x = torch.rand(4, *shape, generator=torch.Generator().manual_seed(2))
    rx = link.transmit(x, generator=torch.Generator().manual_seed(3))
    dense, free = link.operator(rx, matrix_free=False), link.operator(rx, matrix_free=True)
    assert free.matrix_free and not dense.matrix_free
    assert not link.operator(rx).matrix_free              # small images keep the dense path by default
    v = torch.randn(4, 2 * link.k, generator=torch.Generator().manual_seed(4), dtype=F64)
    torch.testing.assert_close(free(x), dense(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(free.adjoint(v), dense.adjoint(v), rtol=0, atol=1e-6)
    torch.testing.assert_close(free.pinv(rx.y), dense.pinv(rx.y), rtol=0, atol=1e-5)
    torch.testing.assert_close(free.adjoint(v), bmv_t(dense.matrix(F64), v), rtol=0, atol=1e-6)


def bmv_t(m, v):
    return (m.transpose(-1, -2) @ v[..., None]).squeeze(-1)


def test_adjoint_is_the_transpose_by_autograd():
    """⟨A x, v⟩ = ⟨x, Aᵀ v⟩: the matrix-free adjoint is the gradient of the forward map."""
    shape = (3, 20, 30)
    link = make_link("downsample", shape, "1/10", "rayleigh", 10.0)
    rx = link.transmit(torch.rand(2, *shape), generator=torch.Generator().manual_seed(0))
    op = link.operator(rx, matrix_free=True)
    x = torch.rand(2, *shape, dtype=F64, requires_grad=True)
    v = torch.randn(2, 2 * link.k, dtype=F64)
    (complex_to_real(op(x)).double() * v).sum().backward()
    torch.testing.assert_close(op.adjoint(v), x.grad.flatten(1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("channel", ["awgn", "rayleigh"])
def test_big_photo_pinv_is_block_average(channel):
    """512×512×3 at CBR 1/16 (a dense matrix would be 98,304 × 786,432): A⁺ of the noiseless signal is the
    block-averaged image, with one complex gain per image (block fading) as the link sees it."""
    shape = (3, 512, 512)
    link = make_link("downsample", shape, "1/16", channel, 10.0)
    assert link.is_linear and link.kind == "linear" and not link.encoder.has_matrix
    assert link.encoder.grid == (128, 256)
    x = torch.rand(1, *shape, generator=torch.Generator().manual_seed(0))
    rx = link.transmit(x, generator=torch.Generator().manual_seed(1))
    op = link.operator(rx)
    assert op.matrix_free
    block = F.avg_pool2d(x, (4, 2)).repeat_interleave(4, 2).repeat_interleave(2, 3)
    torch.testing.assert_close(op.pinv(op(x)), block, rtol=0, atol=1e-5)
    assert float((op.pinv(rx.y) - block).pow(2).mean()) < 0.2     # noisy y at 10 dB: finite, near the average
    with pytest.raises(DiffcommError, match="too large"):
        op.matrix()
    with pytest.raises(DiffcommError, match="too large"):
        op.svd()
    with pytest.raises(DiffcommError, match="too large"):
        _ = link.encoder.matrix


def test_big_photo_zero_gain_is_a_clear_error():
    shape = (3, 512, 512)
    link = make_link("downsample", shape, "1/16", make_channel("rayleigh", block=False), 10.0)
    rx = link.transmit(torch.rand(1, *shape), generator=torch.Generator().manual_seed(0))
    h = rx.h_hat.clone()
    h[0, 5] = 0
    with pytest.raises(DiffcommError, match="below the SVD cut-off"):
        link.operator(rx, h=h).pinv(rx.y)


def test_small_zero_gain_falls_back_to_dense_svd():
    shape = (1, 28, 28)
    link = make_link("downsample", shape, "1/8", make_channel("rayleigh", block=False), 10.0)
    rx = link.transmit(torch.rand(2, *shape), generator=torch.Generator().manual_seed(0))
    h = rx.h_hat.clone()
    h[0, 5] = 0
    torch.testing.assert_close(link.operator(rx, h=h, matrix_free=True).pinv(rx.y),
                               link.operator(rx, h=h, matrix_free=False).pinv(rx.y), rtol=0, atol=1e-5)


def test_matrix_free_refused_for_dense_only_encoders():
    link = make_link("gaussian", (1, 8, 8), "1/4", "awgn", 10.0)
    rx = link.transmit(torch.rand(1, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    assert not link.operator(rx).matrix_free
    with pytest.raises(DiffcommError, match="no matrix-free path"):
        link.operator(rx, matrix_free=True)


def test_downsample_dense_matrix_is_lazy_and_cached():
    enc = Downsample((1, 28, 28), 49)
    assert enc._dense is None and {"pool_h", "pool_w", "pinv_h", "pinv_w"} <= dict(enc.named_buffers()).keys()
    link = Link(enc, "awgn", 10.0)
    assert link.is_linear and enc.matrix.shape == (98, 784) and enc.matrix is enc.matrix


def test_cli_downsample_pinv_on_a_large_colour_image(tmp_path, capsys):
    """`diffcomm transmit --encoder downsample` on a 128×128 RGB image (a dense matrix would have 302M entries):
    one link, no tiles, the matrix-free pseudo-inverse (4×2 windows on a 32×64 grid)."""
    import json

    from diffcomm.cli import main
    from diffcomm.data import read_image, write_image

    x = F.interpolate(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)), size=(128, 128),
                      mode="bilinear", align_corners=False)                  # smooth, so area averaging keeps it
    write_image(tmp_path / "big.png", x)
    out = tmp_path / "rec.png"
    assert main(["transmit", "--input", str(tmp_path / "big.png"), "--encoder", "downsample", "--receiver", "pinv",
                 "--snr", "30", "--cbr", "1/16", "--out", str(out), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert "tiling" not in record and record["k"] == 3 * 128 * 128 // 16 and record["psnr"] > 25
    assert read_image(out).shape == (1, 3, 128, 128)
