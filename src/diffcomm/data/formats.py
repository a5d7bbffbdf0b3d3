"""Readers for standard on-disk dataset formats: CIFAR-10 python batches and image folders.

Neither dataset ships with this environment; these read the files a user downloaded.

**CIFAR-10 batches are Python pickles.** Only open a folder you downloaded yourself from the
official source (https://www.cs.toronto.edu/~kriz/cifar.html, ``cifar-10-python.tar.gz``).
As a safeguard the reader uses a restricted unpickler that only builds dicts, lists, strings,
bytes, numbers and numpy arrays (its allowlist: numpy array reconstruction and
``_codecs.encode``); any other object in the file raises :class:`DiffcommError`
instead of running code.

Example:
    The loading lines are skipped as doctests: they need the user's downloaded CIFAR-10 folder.

    >>> from diffcomm.data.formats import load_cifar10
    >>> images, labels, classes = load_cifar10("~/data/cifar-10-batches-py", "test")  # doctest: +SKIP
    >>> images.shape, classes[0]  # doctest: +SKIP
    (torch.Size([10000, 3, 32, 32]), 'airplane')
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from diffcomm.data.images import open_image, pil_to_tensor
from diffcomm.errors import DiffcommError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}

# The only globals a CIFAR batch pickle needs: numpy array reconstruction (numpy 1.x and 2.x names)
# and bytes decoding.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol <= 2 (pure, no side effects)
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global except numpy array reconstruction."""

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DiffcommError(f"{path} is not a valid CIFAR-10 batch ({exc}); re-extract "
                            f"cifar-10-python.tar.gz") from None
    if not isinstance(obj, dict):
        raise DiffcommError(f"{path} is not a CIFAR-10 batch (a {type(obj).__name__}, expected a dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_cifar_batch(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """One CIFAR-10 python batch: ``(images uint8 (N, 3, 32, 32), labels int64 (N,))``.

    The file is a pickled dict with keys ``b"data"`` (N x 3072 uint8, channel-major rows of 32x32)
    and ``b"labels"`` (N ints); read with a restricted unpickler (see the module docstring).
    """
    path = Path(path)
    if not path.is_file():
        raise DiffcommError(f"CIFAR-10 batch {path} does not exist; extract cifar-10-python.tar.gz there")
    batch = _load_pickle(path)
    if "data" not in batch or "labels" not in batch:
        raise DiffcommError(f"{path} lacks the 'data'/'labels' entries of a CIFAR-10 batch; is it CIFAR-100?")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DiffcommError(f"{path}: expected uint8 data of shape (N, 3072) and N labels, got "
                            f"{data.dtype} {data.shape} and {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        raise DiffcommError(f"{path}: labels must be in 0..9, got {labels.min()}..{labels.max()}")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels)


def load_cifar10(root: str | os.PathLike, split: str = "train") -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """CIFAR-10 from the extracted ``cifar-10-batches-py`` folder (a folder *you* name; pickles).

    Returns ``(images float32 (N, 3, 32, 32) in [0, 1], labels int64 (N,), class names)``.
    ``split="train"`` reads ``data_batch_1`` .. ``data_batch_5``; ``"test"`` reads ``test_batch``.
    Class names come from ``batches.meta`` when present, else the standard ten.
    """
    if split not in CIFAR10_FILES:
        raise DiffcommError(f"CIFAR-10 split must be 'train' or 'test', got {split!r}")
    root = Path(root).expanduser()
    missing = [n for n in CIFAR10_FILES[split] if not (root / n).is_file()]
    if missing:
        raise DiffcommError(f"{root} lacks CIFAR-10 files {missing}; download cifar-10-python.tar.gz from "
                            f"https://www.cs.toronto.edu/~kriz/cifar.html and extract it there")
    parts = [read_cifar_batch(root / n) for n in CIFAR10_FILES[split]]
    images = torch.cat([p[0] for p in parts]).float().div_(255.0)
    labels = torch.cat([p[1] for p in parts])
    classes = CIFAR10_CLASSES
    meta = root / "batches.meta"
    if meta.is_file():
        names = _load_pickle(meta).get("label_names")
        if isinstance(names, list) and len(names) == 10:
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return images, labels, classes


def _image_extensions() -> set[str]:
    from diffcomm.data.images import _register_heif

    _register_heif()
    return {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def load_image_folder(root: str | os.PathLike, mode: str = "RGB",
                      size: int | tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """An image-classification folder: ``root/<class>/<image files>`` (ImageFolder layout).

    Classes are the sub-folder names in sorted order (label i = i-th name); within a class,
    files (searched recursively) come in sorted path order. Every file whose
    extension Pillow can open is read (others, and hidden files, are skipped), converted to
    ``mode`` (``"RGB"`` or ``"L"``) and, when ``size`` is given (``s`` or ``(H, W)``), resized
    with bicubic interpolation. Without ``size`` all images must share one size.
    Returns ``(images float32 (N, C, H, W) in [0, 1], labels int64 (N,), class names)``.
    """
    if mode not in ("RGB", "L"):
        raise DiffcommError(f"mode must be 'RGB' or 'L', got {mode!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DiffcommError(f"image folder {root} does not exist; pass a folder with one sub-folder per class")
    classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")))
    if not classes:
        raise DiffcommError(f"{root} has no class sub-folders; put images in {root}/<class name>/")
    if size is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if len(hw) != 2 or min(hw) < 1:
            raise DiffcommError(f"size must be a positive int or (H, W), got {size!r}")
    exts = _image_extensions()
    images, labels = [], []
    for label, name in enumerate(classes):
        for f in sorted((root / name).rglob("*")):
            if not f.is_file() or f.name.startswith(".") or f.suffix.lower() not in exts:
                continue
            im = open_image(f)
            if size is not None:
                im = im.convert(mode).resize((hw[1], hw[0]), Image.Resampling.BICUBIC)
            images.append(pil_to_tensor(im, mode))
            labels.append(label)
    if not images:
        raise DiffcommError(f"no readable images under {root}/<class>/; supported: .png, .jpg, .webp, ...")
    shapes = {tuple(x.shape[2:]) for x in images}
    if len(shapes) > 1:
        raise DiffcommError(f"images in {root} have {len(shapes)} different sizes; pass size=(H, W) to resize")
    return torch.cat(images), torch.tensor(labels, dtype=torch.int64), classes


# ---------------------------------------------------------------------------------------------
# Photo folders (Kodak-style): every image of a folder, split by photo, cut into square patches

FOLDER_TEST_EVERY = 5      # photo i (sorted path order) is a test photo when i % 5 == 0
FOLDER_PER_IMAGE = 256     # patches per photo by default


def photo_folder_files(root: str | os.PathLike) -> list[Path]:
    """Every readable image file under ``root`` (recursive, sorted path order, hidden files skipped)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DiffcommError(f"image folder {root} does not exist; pass a folder of photos (PNG, JPEG, ...)")
    exts = _image_extensions()
    files = [f for f in sorted(root.rglob("*")) if f.is_file() and f.suffix.lower() in exts
             and not any(part.startswith(".") for part in f.relative_to(root).parts)]
    if not files:
        raise DiffcommError(f"no readable images under {root}; supported: .png, .jpg, .webp, ...")
    return files


def folder_split(files: list[Path], split: str) -> list[Path]:
    """The photos of a split, **by photo**: test = every :data:`FOLDER_TEST_EVERY`-th file (index 0, 5, ...),
    train = the rest, all = every file. A folder of one photo has no training photos (a one-line error)."""
    if split == "all":
        return list(files)
    if split not in ("train", "test"):
        raise DiffcommError(f"image-folder split must be 'train', 'test' or 'all', got {split!r}")
    chosen = [f for i, f in enumerate(files) if (i % FOLDER_TEST_EVERY == 0) == (split == "test")]
    if not chosen:
        raise DiffcommError(f"the image folder has {len(files)} photo(s), none for the {split} split "
                            f"(test = every {FOLDER_TEST_EVERY}th photo); add photos or use split 'all'")
    return chosen


def load_folder_patches(root: str | os.PathLike, split: str = "train", size: int = 32,
                        per_image: int = FOLDER_PER_IMAGE, seed: int = 0,
                        mode: str = "RGB") -> tuple[torch.Tensor, list[str]]:
    """Square ``size`` patches of the photos in a folder (Kodak/CLIC/DIV2K style), split by photo.

    Returns ``(patches float32 (N, C, size, size) in [0, 1], the source file of each patch)`` with
    ``N = per_image × photos``, grouped by photo in sorted path order. Photos are converted to
    ``mode`` (``"RGB"`` or ``"L"``). Crops are the uniform random corners of
    :func:`diffcomm.data.natural.crop_corners`, seeded by ``(seed, file name)``: the same files give
    the same (fixed) patches every run, a training set of random crops that a test set never
    overlaps (different photos). ``size = 0`` keeps whole photos instead (they must share one size).
    A photo smaller than ``size`` is a one-line error.
    """
    from diffcomm.data.natural import crop_corners

    if mode not in ("RGB", "L"):
        raise DiffcommError(f"mode must be 'RGB' or 'L', got {mode!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise DiffcommError(f"patch size must be a non-negative integer (0 = whole photos), got {size!r}")
    if isinstance(per_image, bool) or not isinstance(per_image, int) or per_image < 1:
        raise DiffcommError(f"per_image must be a positive integer, got {per_image!r}")
    root = Path(root).expanduser()
    files = folder_split(photo_folder_files(root), split)
    patches, names = [], []
    for f in files:
        x = pil_to_tensor(open_image(f), mode)[0]                       # (C, H, W) float32
        name = str(f.relative_to(root))
        if size == 0:
            patches.append(x)
            names.append(name)
            continue
        _, h, w = x.shape
        if size > min(h, w):
            raise DiffcommError(f"patch size {size} exceeds photo {name} ({h}x{w}); use patch <= {min(h, w)}")
        for r, c in crop_corners(name, h, w, size, per_image, seed).tolist():
            patches.append(x[:, r:r + size, c:c + size])
        names += [name] * per_image
    if len({tuple(p.shape) for p in patches}) > 1:
        raise DiffcommError(f"photos in {root} have different sizes; use a patch size (patch = 32) to crop them")
    return torch.stack(patches).contiguous(), names
