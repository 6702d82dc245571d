"""Readers of real image datasets (pipeline.data.vision.readers) on tiny fixtures written here, in tmp_path,
in the exact on-disk formats: MNIST IDX (plain and gzip), CIFAR pickles (as Python 3 and as Python 2 wrote
them), image folders, JSON-lines and COCO caption files; every kind of bad data is one DataError line."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
import subprocess

import numpy as np
import pytest
from PIL import Image

from pipeline.data.vision.readers import read_real
from pipeline.data.vision.readers_cifar import ALLOWED
from pipeline.errors import DataError, ParamsError
from conftest import one_error

# ----------------------------------------------------------------------------- MNIST


def idx(array: np.ndarray) -> bytes:
    """``array`` (uint8) as an IDX file: magic 00 00 08 <ndim>, big-endian uint32 dims, the data."""
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def mnist_arrays():
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    train[0, 0, 0], train[0, 27, 1], train[3, 5, 7] = 0, 255, 17  # pixels checked by value
    test = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    return train, np.arange(20, dtype=np.uint8) % 10, test, np.array([7, 2, 1, 0], dtype=np.uint8)


def write_mnist(root, gz=False):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    train, ytrain, test, ytest = mnist_arrays()
    for name, arr in [("train-images-idx3-ubyte", train), ("train-labels-idx1-ubyte", ytrain),
                      ("t10k-images-idx3-ubyte", test), ("t10k-labels-idx1-ubyte", ytest)]:
        data = idx(arr)
        (raw / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return raw


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_exactly(tmp_path, gz):
    raw = write_mnist(tmp_path, gz)
    train, ytrain, test, ytest = mnist_arrays()
    for root in (tmp_path, raw):  # the folder holding MNIST/, or MNIST/raw itself
        sets = read_real("mnist", root, valid_fraction=0.25, seed=3)
        assert list(sets) == ["train", "valid", "test"]
        assert [len(s) for s in sets.values()] == [15, 5, 4]
        t = sets["test"]
        assert t.images.shape == (4, 28, 28, 3) and t.images.dtype == np.uint8
        assert np.array_equal(t.images, np.repeat(test[..., None], 3, axis=-1))
        assert t.labels.tolist() == [7, 2, 1, 0] and t.class_names == [str(d) for d in range(10)]
        assert t.ids == ["mnist-test-00000", "mnist-test-00001", "mnist-test-00002", "mnist-test-00003"]
        # train + valid are the train file, each image under its own index, with its own label
        both = {i: (img, y) for s in ("train", "valid") for i, img, y in zip(sets[s].ids, sets[s].images, sets[s].labels)}
        assert sorted(both) == [f"mnist-train-{i:05d}" for i in range(20)]
        img0, y3 = both["mnist-train-00000"][0], both["mnist-train-00003"][1]
        assert img0[0, 0].tolist() == [0, 0, 0] and img0[27, 1].tolist() == [255, 255, 255] and y3 == 3
        assert both["mnist-train-00003"][0][5, 7].tolist() == [17, 17, 17]
    again = read_real("mnist", tmp_path, valid_fraction=0.25, seed=3)
    assert again["valid"].ids == sets["valid"].ids  # seeded


def test_mnist_bad_files(tmp_path):
    raw = write_mnist(tmp_path)
    images = raw / "train-images-idx3-ubyte"
    good = images.read_bytes()
    images.write_bytes(good[:-100])
    one_error(lambda: read_real("mnist", tmp_path), images, "truncated")
    images.write_bytes(good[:10])
    one_error(lambda: read_real("mnist", tmp_path), images, "truncated")
    images.write_bytes(b"\x00\x00\x08\x01" + good[4:])
    one_error(lambda: read_real("mnist", tmp_path), images, "magic")
    images.write_bytes(good)
    labels = raw / "t10k-labels-idx1-ubyte"
    labels.write_bytes(idx(np.array([1, 2, 3], dtype=np.uint8)))
    one_error(lambda: read_real("mnist", tmp_path), labels, "3 labels for 4 images")
    labels.unlink()
    one_error(lambda: read_real("mnist", tmp_path), labels, "missing")
    one_error(lambda: read_real("mnist", tmp_path / "elsewhere"), tmp_path / "elsewhere", "missing")
    (tmp_path / "empty").mkdir()
    one_error(lambda: read_real("mnist", tmp_path / "empty"), "no MNIST files")


def test_mnist_bad_gzip(tmp_path):
    raw = write_mnist(tmp_path, gz=True)
    path = raw / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])  # a cut gzip stream
    one_error(lambda: read_real("mnist", tmp_path), path, "unreadable")


# ----------------------------------------------------------------------------- CIFAR


class Py2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle wrote the released CIFAR files: every str and bytes as a Python 2 str
    (BINSTRING, no ``_codecs.encode`` global); :func:`py2_pickle` renames numpy's module as numpy 1 did."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def py2_pickle(obj) -> bytes:
    import io

    f = io.BytesIO()
    Py2Pickler(f, protocol=2).dump(obj)
    return f.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def cifar_images(n: int, seed: int) -> np.ndarray:
    """uint8 [n, 32, 32, 3] HWC images; image 0's pixel (row 1, col 2) is (10, 20, 30)."""
    hwc = np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    hwc[0, 1, 2] = (10, 20, 30)
    return hwc


def planar(hwc: np.ndarray) -> np.ndarray:
    """[N, 32, 32, 3] -> the files' rows: [N, 3072], the red plane, then green, then blue."""
    return hwc.transpose(0, 3, 1, 2).reshape(len(hwc), 3072)


def dump(path, obj, py2: bool):
    path.write_bytes(py2_pickle(obj) if py2 else pickle.dumps(obj, protocol=2))


def write_cifar10(root, py2=False, batch=2):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    dump(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": batch, b"num_vis": 3072}, py2)
    for i in range(1, 6):
        hwc = cifar_images(batch, i)
        dump(folder / f"data_batch_{i}", {b"batch_label": b"training batch %d of 5" % i, b"data": planar(hwc),
                                          b"labels": [(i + j) % 10 for j in range(batch)],
                                          b"filenames": [b"f%d.png" % j for j in range(batch)]}, py2)
    dump(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"data": planar(cifar_images(3, 0)),
                                 b"labels": [3, 8, 8], b"filenames": [b"a.png", b"b.png", b"c.png"]}, py2)
    return folder


@pytest.mark.parametrize("py2", [False, True], ids=["python3-protocol2", "python2-cpickle"])
def test_cifar10_reads_batches_exactly(tmp_path, py2):
    folder = write_cifar10(tmp_path, py2)
    for root in (tmp_path, folder):
        sets = read_real("cifar10", root, valid_fraction=0.2)
        assert [len(s) for s in sets.values()] == [8, 2, 3]
        t = sets["test"]
        assert t.class_names[:3] == ["airplane", "automobile", "bird"] and t.labels.tolist() == [3, 8, 8]
        assert t.images.shape == (3, 32, 32, 3) and np.array_equal(t.images, cifar_images(3, 0))
        assert t.images[0, 1, 2].tolist() == [10, 20, 30]  # HWC: R, G, B of one pixel, not a plane's neighbours
        assert t.ids == ["cifar10-test-00000", "cifar10-test-00001", "cifar10-test-00002"]
        train = {i: (img, y) for s in ("train", "valid") for i, img, y in zip(sets[s].ids, sets[s].images, sets[s].labels)}
        assert sorted(train) == [f"cifar10-train-{i:05d}" for i in range(10)]
        img, y = train["cifar10-train-00005"]  # batch 3, image 1
        assert np.array_equal(img, cifar_images(2, 3)[1]) and y == 4


def write_cifar100(root, py2=False):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    fine = [f"fine{i}".encode() for i in range(100)]
    coarse = [f"coarse{i}".encode() for i in range(20)]
    dump(folder / "meta", {b"fine_label_names": fine, b"coarse_label_names": coarse}, py2)
    for split, n, seed in (("train", 5, 7), ("test", 2, 0)):
        dump(folder / split, {b"data": planar(cifar_images(n, seed)), b"fine_labels": [99 - j for j in range(n)],
                              b"coarse_labels": [19 - j for j in range(n)], b"filenames": [b"x"] * n,
                              b"batch_label": split.encode()}, py2)
    return folder


@pytest.mark.parametrize("py2", [False, True], ids=["python3-protocol2", "python2-cpickle"])
def test_cifar100_fine_and_coarse(tmp_path, py2):
    write_cifar100(tmp_path, py2)
    fine = read_real("cifar100", tmp_path, valid_fraction=0.2)
    assert [len(s) for s in fine.values()] == [4, 1, 2]
    t = fine["test"]
    assert len(t.class_names) == 100 and t.labels.tolist() == [99, 98] and t.class_names[99] == "fine99"
    assert np.array_equal(t.images, cifar_images(2, 0)) and t.images[0, 1, 2].tolist() == [10, 20, 30]
    assert t.ids == ["cifar100-test-00000", "cifar100-test-00001"]
    coarse = read_real("cifar100", tmp_path, labels="coarse")["test"]
    assert len(coarse.class_names) == 20 and coarse.labels.tolist() == [19, 18] and coarse.class_names[18] == "coarse18"
    with pytest.raises(ParamsError):
        read_real("cifar100", tmp_path, labels="medium")


class System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Popen:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return subprocess.Popen, (["touch", str(self.marker)],)


class Eval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w')",)


@pytest.mark.parametrize("payload", [System, Popen, Eval])
def test_cifar_refuses_other_globals_without_running_them(tmp_path, payload):
    folder = write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    evil = folder / "data_batch_2"
    evil.write_bytes(pickle.dumps({b"data": payload(marker), b"labels": [0]}, protocol=2))
    # protocol 2 writes Python 2 module names: posix.system, commands.Popen (subprocess), __builtin__.eval
    one_error(lambda: read_real("cifar10", tmp_path), evil, "refused", "global", {System: ".system", Popen: ".Popen",
                                                                               Eval: ".eval"}[payload])
    assert not marker.exists()


def test_cifar_unpickler_admits_only_arrays_and_bytes():
    assert set(ALLOWED) == {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                            ("numpy", "ndarray"), ("numpy", "dtype"), ("builtins", "bytes"),
                            ("__builtin__", "bytes"), ("_codecs", "encode")}


def test_cifar_bad_files(tmp_path):
    folder = write_cifar10(tmp_path)
    batch = folder / "data_batch_4"
    good = batch.read_bytes()
    batch.write_bytes(good[: len(good) // 2])
    one_error(lambda: read_real("cifar10", tmp_path), batch, "unreadable")
    batch.write_bytes(b"not a pickle at all")
    one_error(lambda: read_real("cifar10", tmp_path), batch, "unreadable")
    # _codecs.encode is admitted only to rebuild bytes from latin1
    batch.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R.")
    one_error(lambda: read_real("cifar10", tmp_path), batch, "latin1")
    dump(batch, {b"data": planar(cifar_images(2, 4)), b"labels": [1, 2, 3]}, False)
    one_error(lambda: read_real("cifar10", tmp_path), batch, "3 labels for 2 images")
    dump(batch, {b"data": np.zeros((2, 3000), np.uint8), b"labels": [1, 2]}, False)
    one_error(lambda: read_real("cifar10", tmp_path), batch, "[N, 3072]")
    dump(batch, {b"data": planar(cifar_images(2, 4)), b"labels": [1, 10]}, False)
    one_error(lambda: read_real("cifar10", tmp_path), batch, "label 10")
    batch.unlink()
    one_error(lambda: read_real("cifar10", tmp_path), batch, "missing")
    (tmp_path / "other").mkdir()
    one_error(lambda: read_real("cifar100", tmp_path / "other"), "no cifar-100-python/ folder")


# ----------------------------------------------------------------------------- image folders


def pixels(seed: int, h: int = 6, w: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_png(path, arr):
    """PNG content whatever the suffix (lossless, so pixels can be checked exactly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")


def test_imagefolder_with_split_folders(tmp_path):
    for split, seed in (("train", 0), ("val", 10), ("test", 20)):
        write_png(tmp_path / split / "cat" / "a.png", pixels(seed))
        write_png(tmp_path / split / "dog" / "b.png", pixels(seed + 1))
    Image.fromarray(pixels(99)).convert("L").save(tmp_path / "train" / "dog" / "grey.PNG")  # greyscale -> RGB
    (tmp_path / "train" / "dog" / "notes.txt").write_text("ignored")
    sets = read_real("imagefolder", tmp_path)
    assert list(sets) == ["train", "valid", "test"]
    assert sets["train"].class_names == ["cat", "dog"] and sets["train"].labels.tolist() == [0, 1, 1]
    assert sets["train"].ids == ["train/cat/a.png", "train/dog/b.png", "train/dog/grey.PNG"]
    assert np.array_equal(sets["valid"].images, np.stack([pixels(10), pixels(11)]))  # PNG is lossless
    grey = np.asarray(Image.fromarray(pixels(99)).convert("L"))
    assert np.array_equal(sets["train"].images[2], np.repeat(grey[..., None], 3, axis=-1))


def test_imagefolder_without_splits_resized_jpeg(tmp_path):
    for c in ("a", "b", "c"):
        for i in range(4):
            path = tmp_path / c / f"{i}.jpg"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(pixels(i, 10 + i, 12)).save(path, quality=95)  # sizes differ: resized
    sets = read_real("imagefolder", tmp_path, image_size=8, valid_fraction=0.25, test_fraction=0.25, seed=1)
    assert [len(s) for s in sets.values()] == [6, 3, 3]
    assert all(s.images.shape[1:] == (8, 8, 3) for s in sets.values())
    assert sorted(i for s in sets.values() for i in s.ids) == sorted(f"{c}/{i}.jpg" for c in "abc" for i in range(4))
    rect = read_real("imagefolder", tmp_path, image_size=[4, 6])["train"]
    assert rect.images.shape[1:] == (4, 6, 3)
    with pytest.raises(ParamsError):
        read_real("imagefolder", tmp_path, image_size=0)


def test_imagefolder_bad_data(tmp_path):
    write_png(tmp_path / "train" / "cat" / "a.png", pixels(0))
    write_png(tmp_path / "train" / "dog" / "b.png", pixels(1, 7, 5))
    one_error(lambda: read_real("imagefolder", tmp_path), tmp_path / "train" / "dog" / "b.png", "5x7", "5x6")
    write_png(tmp_path / "train" / "dog" / "b.png", pixels(1))
    (tmp_path / "train" / "bird").mkdir()
    one_error(lambda: read_real("imagefolder", tmp_path), tmp_path / "train" / "bird", "empty class folder")
    (tmp_path / "train" / "bird").rmdir()
    bad = tmp_path / "train" / "cat" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    one_error(lambda: read_real("imagefolder", tmp_path), bad, "unreadable image")
    cut = tmp_path / "train" / "cat" / "broken.png"
    write_png(cut, pixels(3, 60, 60))
    cut.write_bytes(cut.read_bytes()[:200])
    one_error(lambda: read_real("imagefolder", tmp_path), cut, "unreadable image")
    cut.unlink()
    write_png(tmp_path / "extra" / "cat" / "c.png", pixels(2))
    one_error(lambda: read_real("imagefolder", tmp_path), tmp_path / "extra", "unknown split name")


# ----------------------------------------------------------------------------- captions


def test_jsonl_captions_grouped_per_image(tmp_path):
    write_png(tmp_path / "img" / "1.png", pixels(1))
    write_png(tmp_path / "img" / "2.png", pixels(2))
    write_png(tmp_path / "img" / "3.png", pixels(3))
    rows = [{"image": "img/1.png", "caption": "a red square", "label": "square", "split": "train"},
            {"image": "img/2.png", "caption": "a blue disc", "label": "disc", "split": "val"},
            {"image": "img/1.png", "caption": "red, square", "label": "square", "split": "train"},
            {"image": "img/3.png", "caption": "green disc", "label": "disc", "split": "test"}]
    path = tmp_path / "captions.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    sets = read_real("jsonl", path)
    assert list(sets) == ["train", "valid", "test"]
    assert sets["train"].ids == ["img/1.png"] and sets["train"].captions == [["a red square", "red, square"]]
    assert sets["train"].class_names == ["disc", "square"] and sets["train"].labels.tolist() == [1]
    assert np.array_equal(sets["valid"].images[0], pixels(2)) and sets["test"].captions == [["green disc"]]
    # no labels, no splits: one class "none", a seeded draw; images relative to the images option
    (tmp_path / "sub").mkdir()
    plain = tmp_path / "sub" / "c.jsonl"
    plain.write_text("".join(json.dumps({"image": f"{i}.png", "caption": f"c{i}"}) + "\n" for i in (1, 2, 3)))
    sets = read_real("jsonl", plain, images=str(tmp_path / "img"), valid_fraction=0.34, test_fraction=0.34)
    assert sorted(i for s in sets.values() for i in s.ids) == ["1.png", "2.png", "3.png"]
    assert all(s.class_names == ["none"] and len(s) == 1 for s in sets.values())


def test_jsonl_bad_data(tmp_path):
    write_png(tmp_path / "1.png", pixels(1))
    path = tmp_path / "c.jsonl"
    cases = [([{"image": "1.png", "caption": "x", "split": "holdout"}], ["c.jsonl:1", "unknown split name"]),
             ([{"image": "9.png", "caption": "x"}], [tmp_path / "9.png", "missing"]),
             ([{"image": "1.png"}], ["c.jsonl:1", "caption"]),
             ([{"image": "1.png", "caption": "x", "label": "a"}, {"image": "1.png", "caption": "y"}],
              ["c.jsonl:2", "'label'"]),
             ([{"image": "1.png", "caption": "x", "label": "a"}, {"image": "1.png", "caption": "y", "label": "b"}],
              ["c.jsonl:2", "label/split"])]
    for rows, names in cases:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        one_error(lambda: read_real("jsonl", path), *names)
    path.write_text("{not json\n")
    one_error(lambda: read_real("jsonl", path), "c.jsonl:1", "invalid JSON")
    path.write_bytes(b"\xff\xfe\x00binary")
    one_error(lambda: read_real("jsonl", path), path, "not UTF-8 text")


def coco(images, annotations) -> str:
    return json.dumps({"info": {}, "images": images, "annotations": annotations})


def test_coco_file_and_folder(tmp_path):
    for split, seed in (("train2017", 0), ("val2017", 10)):
        for i in (1, 2):
            write_png(tmp_path / split / f"{seed + i:012d}.jpg", pixels(seed + i))  # PNG content: PIL goes by the bytes
    (tmp_path / "annotations").mkdir()
    imgs = lambda seed: [{"id": seed + i, "file_name": f"{seed + i:012d}.jpg", "width": 5, "height": 6} for i in (1, 2)]
    (tmp_path / "annotations" / "captions_train2017.json").write_text(coco(imgs(0), [
        {"id": 1, "image_id": 2, "caption": "two"}, {"id": 2, "image_id": 1, "caption": "one"},
        {"id": 3, "image_id": 2, "caption": "TWO"}]))
    (tmp_path / "annotations" / "captions_val2017.json").write_text(coco(imgs(10), [
        {"id": 4, "image_id": 11, "caption": "eleven"}]))
    one = read_real("coco", tmp_path / "annotations" / "captions_train2017.json", split="train")
    assert list(one) == ["train"] and one["train"].ids == ["000000000001.jpg", "000000000002.jpg"]
    assert one["train"].captions == [["one"], ["two", "TWO"]] and one["train"].class_names == ["none"]
    assert np.array_equal(one["train"].images, np.stack([pixels(1), pixels(2)]))
    folder = read_real("coco", tmp_path, valid_fraction=0.5)
    assert [len(s) for s in folder.values()] == [1, 1, 2]
    assert folder["test"].captions == [["eleven"], []]  # an image with no caption is kept with none


def test_coco_bad_data(tmp_path):
    write_png(tmp_path / "imgs" / "a.png", pixels(1))
    path = tmp_path / "caps.json"
    path.write_text(coco([{"id": 1, "file_name": "a.png"}], [{"image_id": 7, "caption": "x"}]))
    one_error(lambda: read_real("coco", path, images=str(tmp_path / "imgs")), path, "image_id 7")
    path.write_text(coco([{"id": 1, "file_name": "b.png"}], [{"image_id": 1, "caption": "x"}]))
    one_error(lambda: read_real("coco", path, images=str(tmp_path / "imgs")), tmp_path / "imgs" / "b.png", "missing")
    path.write_text(coco([{"id": 1, "file_name": "a.png"}], []))
    one_error(lambda: read_real("coco", path, images=str(tmp_path / "imgs"), split="holdout"), "unknown split name")
    path.write_text('{"images": [')
    one_error(lambda: read_real("coco", path), path, "unreadable")
    one_error(lambda: read_real("coco", tmp_path), tmp_path / "annotations" / "captions_train2017.json", "missing")


def test_unknown_kind_and_option(tmp_path):
    with pytest.raises(ParamsError, match="unknown kind"):
        read_real("imagenet", tmp_path)
    with pytest.raises(ParamsError, match="unknown option 'image_size'"):
        read_real("mnist", tmp_path, image_size=28)
    with pytest.raises(ParamsError, match="valid_fraction"):
        read_real("imagefolder", tmp_path, valid_fraction=1.5)


def test_a_damaged_prepared_split_is_one_line(tmp_path):
    """read_split (what every later stage reads) names the folder and the problem instead of a traceback."""
    from pipeline.data.vision.imageset import ImageSet, read_split, write_split

    write_split(tmp_path, "train", ImageSet(np.zeros((2, 8, 8, 3), np.uint8), np.array([0, 1]), ["a", "b"], ["x0", "x1"]))
    rows = (tmp_path / "train.jsonl").read_text().splitlines()
    (tmp_path / "train.jsonl").write_text(rows[0] + "\n" + json.dumps({"label": 1}) + "\n")
    one_error(lambda: read_split(tmp_path, "train"), tmp_path, "does not match its format")
    (tmp_path / "train.jsonl").write_text(rows[0] + "\n")
    one_error(lambda: read_split(tmp_path, "train"), "train.jsonl", "1 rows for 2 images")
    (tmp_path / "train.safetensors").write_bytes(b"junk")
    one_error(lambda: read_split(tmp_path, "train"), tmp_path, "unreadable train split")
