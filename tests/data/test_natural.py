import pytest
import torch

from diffcomm.data import (
    NATURAL_PHOTOS,
    NATURAL_TEST_PHOTOS,
    NATURAL_TRAIN_PHOTOS,
    get_dataset,
    load_natural_patches,
    load_photo,
)
from diffcomm.data.natural import crop_corners
from diffcomm.errors import DiffcommError


def test_split_is_by_photo_and_disjoint():
    assert set(NATURAL_TEST_PHOTOS).isdisjoint(NATURAL_TRAIN_PHOTOS)
    assert set(NATURAL_TEST_PHOTOS) | set(NATURAL_TRAIN_PHOTOS) == set(NATURAL_PHOTOS)
    x, names = load_natural_patches("train", size=16, per_photo=3)
    xt, names_t = load_natural_patches("test", size=16, per_photo=3)
    assert set(names) == set(NATURAL_TRAIN_PHOTOS) and set(names_t) == set(NATURAL_TEST_PHOTOS)
    assert x.shape == (3 * len(NATURAL_TRAIN_PHOTOS), 3, 16, 16) and xt.shape == (9, 3, 16, 16)
    assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1


def test_all_photos_load_offline_as_rgb_and_are_distinct():
    photos = {n: load_photo(n) for n in NATURAL_PHOTOS}
    for name, p in photos.items():
        assert p.ndim == 3 and p.shape[2] == 3 and min(p.shape[:2]) >= 256, name
        assert not p.flags.writeable
    # no photo is a duplicate of another (skimage's cat() == chelsea() was left out for this reason)
    sigs = {(p.shape, p[::37, ::41].tobytes()) for p in photos.values()}
    assert len(sigs) == len(photos)


def test_crops_are_deterministic_and_match_the_photo():
    a, names = load_natural_patches("test", size=24, per_photo=5, seed=3)
    b, _ = load_natural_patches("test", size=24, per_photo=5, seed=3)
    assert torch.equal(a, b)
    c, _ = load_natural_patches("test", size=24, per_photo=5, seed=4)
    assert not torch.equal(a, c)
    # patch i of coffee is exactly the photo crop at the documented corner
    photo = torch.from_numpy(load_photo("coffee").copy()).permute(2, 0, 1).float() / 255
    corners = crop_corners("coffee", photo.shape[1], photo.shape[2], 24, 5, seed=3)
    first = names.index("coffee")
    for i, (r, col) in enumerate(corners.tolist()):
        assert torch.equal(a[first + i], photo[:, r:r + 24, col:col + 24])
    # a photo's patches do not depend on which split they are drawn in
    everything, all_names = load_natural_patches("all", size=24, per_photo=5, seed=3)
    start = all_names.index("coffee")
    assert torch.equal(everything[start:start + 5], a[first:first + 5])


def test_registry_labels_are_photo_indices():
    ds = get_dataset("natural-patches", "test")
    assert ds.images.shape[1:] == (3, 32, 32)
    assert {ds.classes[i] for i in ds.labels.tolist()} == set(NATURAL_TEST_PHOTOS)


def test_bad_arguments():
    with pytest.raises(DiffcommError, match="split"):
        load_natural_patches("validation")
    with pytest.raises(DiffcommError, match="exceeds photo"):
        load_natural_patches("test", size=5000, per_photo=1)
    with pytest.raises(DiffcommError, match="per_photo"):
        load_natural_patches("test", per_photo=0)


def test_per_photo_option_of_the_registry_spec():
    from diffcomm.data.datasets import parse_dataset_spec

    assert parse_dataset_spec("natural-patches?per_photo=8") == ("natural-patches", {"per_photo": 8})
    ds = get_dataset("natural-patches?per_photo=8", "test")
    assert ds.images.shape == (8 * len(NATURAL_TEST_PHOTOS), 3, 32, 32)
    torch.testing.assert_close(ds.images, get_dataset("natural-patches", "test", per_photo=8).images)
    for bad, match in (("natural-patches?per_photo=0", "positive"), ("natural-patches?size=3", "not one of"),
                       ("fashion-mnist?per_photo=3", "takes no options")):
        with pytest.raises(DiffcommError, match=match):
            parse_dataset_spec(bad)
