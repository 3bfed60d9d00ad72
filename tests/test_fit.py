import numpy as np

from train.fit import _batches_class


def test_training_batches_are_seeded_and_keep_rows_with_their_labels():
    batches = _batches_class()
    x = np.arange(40, dtype=np.float32).reshape(20, 2)  # row r holds (2r, 2r+1)
    y = np.arange(20) % 2
    first = [batches(x, y, 8, seed=1)[i] for i in range(3)]
    again = [batches(x, y, 8, seed=1)[i] for i in range(3)]
    for (xa, ya), (xb, yb) in zip(first, again, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal((xa[:, 0] // 2) % 2, ya[:, 0])
    seen = np.sort(np.concatenate([xa[:, 0] for xa, _ in first]))
    np.testing.assert_array_equal(seen, x[:, 0])  # every row once per epoch
    assert not np.array_equal(first[0][0], x[:8])  # shuffled


def test_validation_batches_keep_their_order():
    batches = _batches_class()
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    val = batches(x, np.zeros(20), 8, seed=None)
    assert len(val) == 3
    np.testing.assert_array_equal(val[1][0], x[8:16])
    np.testing.assert_array_equal(val[2][0], x[16:])
