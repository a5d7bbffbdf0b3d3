"""Datasets that load offline, dataset file formats, and image I/O.

Pixels are float32 in [0, 1], shape (B, C, H, W), everywhere (see docs/interfaces.md).

Example:
    >>> from diffcomm.data import get_dataset, save_grid
    >>> images, labels = get_dataset("digits8", "test")[:2]
    >>> images.shape
    torch.Size([360, 1, 8, 8])
"""

from diffcomm.data.datasets import (
    DATASETS,
    DIGIT_CLASSES,
    FASHION_MNIST_CLASSES,
    Dataset,
    dataset_info,
    fashion_mnist_root,
    get_dataset,
    load_digits8,
    load_fashion_mnist,
    load_mnist_subset,
)
from diffcomm.data.formats import CIFAR10_CLASSES, load_cifar10, load_image_folder, read_cifar_batch
from diffcomm.data.idx import read_idx, read_idx_header, write_idx
from diffcomm.data.images import (
    check_pixels,
    encode_image,
    make_grid,
    open_image,
    pil_to_tensor,
    read_image,
    save_grid,
    tensor_to_pil,
    write_image,
)
from diffcomm.data.natural import (
    NATURAL_PHOTOS,
    NATURAL_TEST_PHOTOS,
    NATURAL_TRAIN_PHOTOS,
    load_natural_patches,
    load_photo,
)

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "DIGIT_CLASSES",
    "FASHION_MNIST_CLASSES",
    "NATURAL_PHOTOS",
    "NATURAL_TEST_PHOTOS",
    "NATURAL_TRAIN_PHOTOS",
    "Dataset",
    "check_pixels",
    "dataset_info",
    "encode_image",
    "fashion_mnist_root",
    "get_dataset",
    "load_cifar10",
    "load_digits8",
    "load_fashion_mnist",
    "load_image_folder",
    "load_mnist_subset",
    "load_natural_patches",
    "load_photo",
    "make_grid",
    "open_image",
    "pil_to_tensor",
    "read_cifar_batch",
    "read_idx",
    "read_idx_header",
    "read_image",
    "save_grid",
    "tensor_to_pil",
    "write_idx",
    "write_image",
]
