import pickle

import numpy as np
import pytest

from conftest import make_arrays, write_npy_dir, write_npz
from runtime.datasets import binary_labels, check_split_pixels, iter_pixel_batches, load_dataset
from runtime.errors import ConfigError, DataError
from runtime.images import PixelRange, to_model_pixels


@pytest.mark.parametrize("channels", [None, 1, 3])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_npz_every_shape_and_dtype_becomes_rgb_pixels(tmp_path, channels, dtype):
    path = write_npz(tmp_path / "d.npz", channels=channels, dtype=dtype)
    ds = load_dataset(path)
    assert set(ds.splits) == {"train", "val", "test"}
    train = ds.splits["train"]
    assert train.labels.shape == (24,) and train.labels.dtype == np.int64
    pr = None if dtype == np.uint8 else PixelRange(0.0, 1.0)
    check_split_pixels(train, pr)
    batches = list(iter_pixel_batches(train, np.arange(24), 10, 75, pr))
    assert [b.shape for b in batches] == [(10, 75, 75, 3), (10, 75, 75, 3), (4, 75, 75, 3)]
    x = np.concatenate(batches)
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 255.0
    if channels != 3:  # grayscale is replicated, not colourized
        np.testing.assert_array_equal(x[..., 0], x[..., 2])
    # the brighter class stays brighter after resizing
    y = train.labels
    assert x[y == 1].mean() > x[y == 0].mean() + 80


def test_float_and_uint8_versions_of_an_image_agree(tmp_path):
    x8, _ = make_arrays(channels=None)
    a = to_model_pixels(x8[:4], 75, None)
    b = to_model_pixels(x8[:4].astype(np.float32) / 255.0, 75, PixelRange(0, 1))
    assert np.abs(a - b).max() <= 1.0  # PIL resizes uint8 in fixed point and rounds to whole values
    assert np.abs(a - b).mean() < 0.35  # rounding alone averages 0.25
    c = to_model_pixels(x8[:4].astype(np.float32) / 127.5 - 1.0, 75, PixelRange(-1, 1))
    np.testing.assert_allclose(b, c, atol=1e-3)


def test_native_size_is_kept_without_resizing():
    x, _ = make_arrays(size=80)
    assert to_model_pixels(x, None, None).shape == (24, 80, 80, 3)
    np.testing.assert_array_equal(to_model_pixels(x, None, None)[..., 1], x.astype(np.float32))


def test_npy_directory_is_memory_mapped_and_batches_follow_indices(tmp_path):
    d = write_npy_dir(tmp_path / "arrays", splits=("train", "val", "test"))
    ds = load_dataset(d)
    assert isinstance(ds.splits["train"].images, np.memmap)
    assert {p.name for p in ds.files} == {"Xtrain.npy", "Ytrain.npy", "Xval.npy", "Yval.npy", "Xtest.npy", "Ytest.npy"}
    idx = np.array([5, 0, 17])
    got = next(iter_pixel_batches(ds.splits["train"], idx, 8, None, None))
    np.testing.assert_array_equal(got[..., 0], np.asarray(ds.splits["train"].images)[idx].astype(np.float32))


def test_positive_label_maps_to_one(tmp_path):
    path = write_npz(tmp_path / "d.npz", labels=(3, 7))
    train = load_dataset(path).splits["train"]
    np.testing.assert_array_equal(binary_labels(train, 7), (train.labels == 7).astype(int))
    np.testing.assert_array_equal(binary_labels(train, 3), (train.labels == 3).astype(int))
    with pytest.raises(DataError, match="positive label 1 not among the labels \\[3, 7\\]"):
        binary_labels(train, 1)


def _npz(tmp_path, **arrays):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    return p


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"),
    ("empty_file", "file is empty"),
    ("truncated", "not a readable .npz"),
    ("wrong_suffix", "unsupported file type '.txt'"),
    ("no_train", "no train_images/train_labels"),
    ("lengths", "24 images but 23 labels"),
    ("shape", "expected \\(N,H,W\\), \\(N,H,W,1\\) or \\(N,H,W,3\\)"),
    ("dtype", "dtype int32; expected uint8 or float"),
    ("empty", "no images"),
    ("fractional_labels", "not whole numbers"),
    ("half_pair", "has train_images but no train_labels"),
])
def test_bad_files_raise_data_error_naming_the_file(tmp_path, case, message):
    x, y = make_arrays()
    if case == "missing":
        path = tmp_path / "nope.npz"
    elif case == "empty_file":
        path = tmp_path / "e.npz"
        path.write_bytes(b"")
    elif case == "truncated":
        good = write_npz(tmp_path / "g.npz")
        path = tmp_path / "t.npz"
        path.write_bytes(good.read_bytes()[:300])
    elif case == "wrong_suffix":
        path = tmp_path / "d.txt"
        path.write_text("hello")
    elif case == "no_train":
        path = _npz(tmp_path, test_images=x, test_labels=y)
    elif case == "lengths":
        path = _npz(tmp_path, train_images=x, train_labels=y[:-1])
    elif case == "shape":
        path = _npz(tmp_path, train_images=x[:, :, :, None, None], train_labels=y)
    elif case == "dtype":
        path = _npz(tmp_path, train_images=x.astype(np.int32), train_labels=y)
    elif case == "empty":
        path = _npz(tmp_path, train_images=x[:0], train_labels=y[:0])
    elif case == "fractional_labels":
        path = _npz(tmp_path, train_images=x, train_labels=y + 0.5)
    else:
        path = _npz(tmp_path, train_images=x)
    with pytest.raises(DataError, match=message) as info:
        load_dataset(path)
    assert str(path) in str(info.value)


def test_pickled_npy_is_refused_without_running_code(tmp_path):
    d = write_npy_dir(tmp_path / "arrays")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    np.save(d / "Ytrain.npy", np.array([Evil()] * 24, dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="Python objects") as info:
        load_dataset(d)
    assert "Ytrain.npy" in str(info.value)
    assert not marker.exists()
    with open(d / "raw.pkl", "wb") as fh:  # a pickle under an .npy name is refused as well
        pickle.dump(Evil(), fh)
    (d / "raw.pkl").rename(d / "Xtrain.npy")
    with pytest.raises(DataError, match="Xtrain.npy"):
        load_dataset(d)
    assert not marker.exists()


def test_directory_needs_both_halves_of_a_pair(tmp_path):
    d = write_npy_dir(tmp_path / "arrays")
    (d / "Ytest.npy").unlink()
    with pytest.raises(DataError, match="has Xtest.npy but no Ytest.npy"):
        load_dataset(d)


@pytest.mark.parametrize("labels, message", [
    ((0, 1, 2), "3 values \\[0, 1, 2\\]; expected a binary task"),
    ((1,), "only one class present \\(label 1\\)"),
])
def test_label_sets_that_are_not_binary(tmp_path, labels, message):
    x = np.zeros((len(labels) * 4, 28, 28), np.uint8)
    y = np.repeat(labels, 4)
    split = load_dataset(_npz(tmp_path, train_images=x, train_labels=y)).splits["train"]
    with pytest.raises(DataError, match=message):
        binary_labels(split, 1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_are_refused_with_their_index(tmp_path, bad):
    x, y = make_arrays(dtype=np.float32)
    x[13, 4, 4] = bad
    split = load_dataset(_npz(tmp_path, train_images=x, train_labels=y)).splits["train"]
    with pytest.raises(DataError, match="image 13 contains NaN or inf"):
        check_split_pixels(split, PixelRange(0, 1))


def test_float_pixels_need_a_declared_range_and_must_respect_it(tmp_path):
    x, y = make_arrays(dtype=np.float32)
    split = load_dataset(_npz(tmp_path, train_images=x, train_labels=y)).splits["train"]
    with pytest.raises(ConfigError, match="--pixel-range"):
        check_split_pixels(split, None)
    with pytest.raises(DataError, match="outside the declared --pixel-range 0,0.5"):
        check_split_pixels(split, PixelRange(0, 0.5))
    u8 = load_dataset(_npz(tmp_path, train_images=(x * 255).astype(np.uint8), train_labels=y)).splits["train"]
    with pytest.raises(ConfigError, match="uint8"):
        check_split_pixels(u8, PixelRange(0, 1))


@pytest.mark.parametrize("text", ["1", "a,b", "1,0", "0,inf", "0,1,2"])
def test_pixel_range_parsing_rejects_nonsense(text):
    with pytest.raises(ConfigError, match="pixel range"):
        PixelRange.parse(text)


def test_streaming_from_npy_allocates_per_batch_not_per_dataset(tmp_path):
    """Flat memory: iterating a memory-mapped split allocates one batch at a time (numpy allocations are traced)."""
    import tracemalloc

    d = tmp_path / "big"
    d.mkdir()
    n, size = 3000, 128  # 49 MB of uint8 pixels, 590 MB once converted to float32 RGB at 128 px
    images = np.lib.format.open_memmap(d / "Xtrain.npy", mode="w+", dtype=np.uint8, shape=(n, size, size))
    images[:] = 7
    images.flush()
    del images
    np.save(d / "Ytrain.npy", np.arange(n) % 2)
    split = load_dataset(d).splits["train"]
    tracemalloc.start()
    total = 0.0
    for batch in iter_pixel_batches(split, np.arange(n), 50, None, None):
        total += float(batch[:, 0, 0, 0].sum())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert total == 7.0 * n
    # a few transient copies of one batch, far below the 49 MB raw array (590 MB as float32 RGB)
    assert peak < 40e6, f"peak {peak / 1e6:.1f} MB; one float32 batch is {50 * size * size * 3 * 4 / 1e6:.1f} MB"
