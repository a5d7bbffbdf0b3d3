"""RGB natural-image patches cut from the photos that Python libraries ship (offline).

Photos (all RGB, 8-bit): from scikit-image (``skimage.data``) astronaut, coffee, chelsea,
rocket, hubble_deep_field, immunohistochemistry and the two views of stereo_motorcycle
(motorcycle_left, motorcycle_right); from scikit-learn (``load_sample_images``) china and
flower; from matplotlib (``cbook.get_sample_data``) grace_hopper. Left out on purpose:
``skimage.data.cat`` (the same picture as chelsea), retina (mostly black border), colorwheel
and logo (synthetic), and the photos scikit-image only fetches from the internet.

The split is **by photo**, so a test patch never comes from a training photo:
test photos = :data:`NATURAL_TEST_PHOTOS` (coffee, flower, grace_hopper); every other photo
is for training. The two motorcycle views are near-duplicates and are both in training.

Crops are uniform random top-left corners drawn from a generator seeded with
``crc32(f"{seed}:{photo}")``: the patches of a photo depend only on (photo, size, per_photo,
seed), not on the split or on the other photos.

Example:
    >>> patches, photos = load_natural_patches("test", size=32, per_photo=4)
    >>> patches.shape, sorted(set(photos))
    (torch.Size([12, 3, 32, 32]), ['coffee', 'flower', 'grace_hopper'])
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

from diffcomm.errors import DiffcommError


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()
    return load


def _motorcycle(view: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return skimage.data.stereo_motorcycle()[view]
    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    return load


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f, Image.open(f) as im:
        return np.asarray(im.convert("RGB"))


#: photo name -> loader returning an (H, W, 3) uint8 array
NATURAL_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "coffee": _skimage("coffee"),
    "chelsea": _skimage("chelsea"),
    "rocket": _skimage("rocket"),
    "hubble_deep_field": _skimage("hubble_deep_field"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
    "motorcycle_left": _motorcycle(0),
    "motorcycle_right": _motorcycle(1),
    "china": _sklearn("china"),
    "flower": _sklearn("flower"),
    "grace_hopper": _grace_hopper,
}
#: photos whose patches form the test split (fixed; never used for training)
NATURAL_TEST_PHOTOS: tuple[str, ...] = ("coffee", "flower", "grace_hopper")
NATURAL_TRAIN_PHOTOS: tuple[str, ...] = tuple(p for p in NATURAL_PHOTOS if p not in NATURAL_TEST_PHOTOS)
DEFAULT_PER_PHOTO = 256


def natural_photo_names(split: str) -> tuple[str, ...]:
    """The photos of a split: ``"train"``, ``"test"`` or ``"all"``."""
    if split == "train":
        return NATURAL_TRAIN_PHOTOS
    if split == "test":
        return NATURAL_TEST_PHOTOS
    if split == "all":
        return tuple(NATURAL_PHOTOS)
    raise DiffcommError(f"natural-patches split must be 'train', 'test' or 'all', got {split!r}")


@lru_cache(maxsize=32)
def load_photo(name: str) -> np.ndarray:
    """One photo as a read-only ``(H, W, 3)`` uint8 array (decoded once per process)."""
    if name not in NATURAL_PHOTOS:
        raise DiffcommError(f"unknown photo {name!r}; choose from {', '.join(NATURAL_PHOTOS)}")
    try:
        arr = np.asarray(NATURAL_PHOTOS[name]())
    except (ImportError, OSError, ValueError) as exc:
        raise DiffcommError(f"photo {name!r} could not be loaded offline ({exc}); reinstall scikit-image, "
                            f"scikit-learn and matplotlib") from None
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise DiffcommError(f"photo {name!r} is {arr.dtype} {arr.shape}, expected (H, W, 3) uint8")
    arr = np.ascontiguousarray(arr)
    arr.setflags(write=False)
    return arr


def crop_corners(name: str, height: int, width: int, size: int, count: int, seed: int) -> torch.Tensor:
    """``count`` top-left corners ``(row, col)`` for ``size``-square crops of a photo, int64 (count, 2)."""
    gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{name}".encode()))
    rows = torch.randint(0, height - size + 1, (count,), generator=gen)
    cols = torch.randint(0, width - size + 1, (count,), generator=gen)
    return torch.stack([rows, cols], dim=1)


def load_natural_patches(split: str = "train", size: int = 32, per_photo: int = DEFAULT_PER_PHOTO,
                         seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """RGB patches ``(N, 3, size, size)`` float32 in [0, 1] and the photo name of each patch.

    ``N = per_photo * len(photos of the split)``; patches are grouped by photo in the order of
    :data:`NATURAL_PHOTOS`. See the module docstring for the photos, the split and the crops.
    """
    photos = natural_photo_names(split)
    if not isinstance(size, int) or size < 1:
        raise DiffcommError(f"patch size must be a positive integer, got {size!r}")
    if not isinstance(per_photo, int) or per_photo < 1:
        raise DiffcommError(f"per_photo must be a positive integer, got {per_photo!r}")
    patches, names = [], []
    for name in photos:
        img = load_photo(name)
        h, w, _ = img.shape
        if size > min(h, w):
            raise DiffcommError(f"patch size {size} exceeds photo {name!r} ({h}x{w}); use size <= {min(h, w)}")
        t = torch.from_numpy(img.copy()).permute(2, 0, 1)
        for r, c in crop_corners(name, h, w, size, per_photo, seed).tolist():
            patches.append(t[:, r:r + size, c:c + size])
        names += [name] * per_photo
    return torch.stack(patches).float().div_(255.0), names
