"""The tiny grid shared by the evaluation tests: linear receivers, n = 4 Fashion-MNIST test images."""

from diffcomm.eval import strip_timing

TINY = {"dataset": "fashion-mnist", "split": "test", "n": 4, "receivers": "pinv,lmmse",
        "encoders": "gaussian,downsample", "channel": "awgn,rayleigh", "snr": "0,20", "cbr": "1/16",
        "save_images": 2, "per_image": True}


def comparable(records):
    """Records keyed by point, without the timing/host fields that legitimately differ."""
    return {r["key"]: strip_timing(r) for r in records}
