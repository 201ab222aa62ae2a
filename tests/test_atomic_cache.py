import numpy as np
import pytest

from benchmark.core.atomic import atomic_open, atomic_write_text, check_writable_dir
from benchmark.core.cache import ArrayCache, content_key, file_digest
from benchmark.core.errors import UserError
from benchmark.core.seeding import derive_seed


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(path, "w") as handle:
            handle.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temporary left behind


def test_unwritable_directory_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="not writable"):
        check_writable_dir(blocker / "sub")


def test_content_key_is_order_independent_and_sensitive():
    assert content_key({"a": 1, "b": [1, 2]}) == content_key({"b": [1, 2], "a": 1})
    assert content_key({"a": 1}) != content_key({"a": 2})


def test_array_cache_round_trip_and_miss_on_other_description(tmp_path):
    cache = ArrayCache(tmp_path)
    desc = {"backbone": "vgg19", "layers": ["relu5_4"], "size": 64}
    array = np.arange(12, dtype=np.float16).reshape(3, 4)
    assert cache.load(desc) is None
    cache.store(desc, array)
    np.testing.assert_array_equal(cache.load(desc), array)
    assert cache.load({**desc, "size": 32}) is None
    assert ArrayCache(None).load(desc) is None


def test_file_digest_changes_with_content(tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(b"one")
    first = file_digest(path)
    path.write_bytes(b"two!")
    assert file_digest(path) != first


def test_derive_seed_is_stable_and_key_dependent():
    assert derive_seed(0, "a") == derive_seed(0, "a")
    assert len({derive_seed(0, "a"), derive_seed(0, "b"), derive_seed(1, "a")}) == 3
