"""Data beyond CIFAR (tfadakd.data.open_dataset): image folders, tfds image classification (imagenet2012
through tfds' mock data), ImageNet-style preprocessing, and a folder end to end through apps/distill.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")
keras = pytest.importorskip("keras")

from tfadakd import data  # noqa: E402
from tfadakd.data import directory_name, folder, imagenet_preprocessing  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("cat", "dog", "fox")
IMAGES_PER_CLASS = 8
SIZE = 32


def write_images(root, classes=CLASSES, count=IMAGES_PER_CLASS, shape=(40, 40, 3), seed=0):
    """`count` random images per class under root/<class>/, alternately PNG and JPEG."""
    rng = np.random.default_rng(seed)
    for name in classes:
        os.makedirs(root / name, exist_ok=True)
        for i in range(count):
            image = rng.integers(0, 256, shape, dtype=np.uint8)
            encoded = tf.io.encode_png(image) if i % 2 else tf.io.encode_jpeg(image)
            (root / name / f"{i}.{'png' if i % 2 else 'jpg'}").write_bytes(encoded.numpy())
    return root


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("images") / "pets")


@pytest.fixture(scope="module")
def app_run(image_folder, tmp_path_factory):
    """apps/distill.py once on the folder: trains the teacher, distills, exports the student to TFLite (float
    and int8); returns (output dir, process)."""
    out = tmp_path_factory.mktemp("runs")
    args = [f"--dataset=folder:{image_folder}", "--teacher=resnet8", "--student=resnet8", f"--image_size={SIZE}",
            "--epochs=1", "--batch_size=8", "--lr_milestones=1", "--verbose=0", f"--output_dir={out}",
            "--export_tflite=none,int8"]
    proc = subprocess.run([sys.executable, str(REPO / "apps" / "distill.py"), *args], capture_output=True, text=True,
                          timeout=600, cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


# ------------------------------------------------------------------------------------------ the app
def test_app_trains_teacher_and_student_under_a_safe_folder_name(app_run, image_folder):
    out, proc = app_run
    runs = out / directory_name(f"folder:{image_folder}")  # folder_pets_<8 hex digits of the path>
    assert runs.name.startswith("folder_pets_") and (runs / "resnet8" / "teacher.keras").is_file()
    run = runs / "resnet8_from_resnet8_kd_adaptive_std_s0"
    assert json.loads((run / "results.json").read_text())["epochs"] == 1
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == f"folder:{image_folder}"
    described = config["data"]
    assert described["path"] == str(image_folder) and described["preprocessing"] == "imagenet"
    assert described["image_size"] == SIZE and described["num_classes"] == 3
    assert described["normalization"] == {"mean": list(imagenet_preprocessing.MEAN),
                                          "std": list(imagenet_preprocessing.STD)}
    assert described["splits"] == {"train": 21, "validation": 3}
    assert json.loads((runs / "resnet8" / "config.json").read_text())["data"] == described  # the teacher's too


def test_int8_export_through_the_app_reads_the_folder_it_trained_on(app_run, image_folder):
    out, _ = app_run  # --export_tflite=none,int8: test and calibration images from the run's config.json "data"
    run = out / directory_name(f"folder:{image_folder}") / "resnet8_from_resnet8_kd_adaptive_std_s0"
    report = json.loads((run / "export.json").read_text())
    assert report["dataset"] == f"folder:{image_folder}" and report["preprocessing"] == "imagenet"
    assert report["image_size"] == SIZE and report["test_split"] == "validation" and report["test_examples"] == 3
    assert report["calibration_examples"] == 21  # every training image: fewer than the 300 asked for
    assert data.open_dataset(f"folder:{image_folder}", image_size=SIZE).calibration_images(16).shape == (16, SIZE, SIZE, 3)
    modes = report["modes"]
    for mode, row in modes.items():
        assert os.path.getsize(row["file"]) == row["size_bytes"] and Path(row["file"]).parent == run / "export"
        assert "CONV_2D" in row["operators"] and not any("Flex" in op for op in row["operators"]), mode
    assert modes["none"]["argmax_agreement"] == 1.0 and modes["none"]["max_abs_logit_diff"] < 1e-4
    # int8: within a few quantization steps of the float logits, the same class, a third of the float file
    assert modes["int8"]["max_abs_logit_diff"] < 0.1 * report["keras_logit_range"] + 1e-3
    assert modes["int8"]["argmax_agreement"] >= 2 / 3
    assert modes["int8"]["size_vs_float32"] < 0.5


@pytest.mark.parametrize("args, message", [
    (["--dataset=folder:"], "names no folder"),
    (["--dataset=folder:/no/such/folder"], "/no/such/folder is not a folder"),
])
def test_app_refuses_bad_data_flags_with_the_value(args, message):
    proc = subprocess.run([sys.executable, str(REPO / "apps" / "distill.py"), *args, "--dry_run"],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]


# ------------------------------------------------------------------------------------------ folders
def test_validation_split_is_disjoint_stratified_and_deterministic(image_folder):
    first = folder.list_folder(image_folder)
    second = folder.list_folder(str(image_folder) + "/")
    assert first.classes == list(CLASSES)
    assert first.splits == second.splits
    train, validation = (set(first.splits[s][0]) for s in ("train", "validation"))
    assert not train & validation and len(train | validation) == len(CLASSES) * IMAGES_PER_CLASS
    assert sorted(first.splits["validation"][1]) == [0, 1, 2]  # one of each class (10% of 8, at least 1)
    labels = first.splits["train"][1]
    assert labels != sorted(labels)  # the listing mixes the classes, so slices do too
    for path, label in zip(*first.splits["train"]):
        assert Path(path).parent.name == CLASSES[label]


def test_train_and_val_folders_are_used_as_given(tmp_path):
    write_images(tmp_path / "train", count=3)
    write_images(tmp_path / "val", classes=CLASSES[:2], count=2, seed=1)
    listing = folder.list_folder(tmp_path)
    assert listing.separate_validation and listing.sizes() == {"train": 9, "validation": 4}
    assert all("/val/" in p for p in listing.splits["validation"][0])
    assert sorted(listing.splits["validation"][1]) == [0, 0, 1, 1]


def test_folder_errors_name_the_problem(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.ImageFolderError, match="holds no class sub-folders"):
        data.open_dataset(f"folder:{tmp_path / 'empty'}")
    write_images(tmp_path / "hollow", count=2)
    (tmp_path / "hollow" / "zebra").mkdir()
    (tmp_path / "hollow" / "zebra" / "notes.txt").write_text("no image here")
    with pytest.raises(data.ImageFolderError, match=r"class folder .*hollow/zebra holds no image"):
        data.open_dataset(f"folder:{tmp_path / 'hollow'}")
    write_images(tmp_path / "tiny", count=1)
    with pytest.raises(data.ImageFolderError, match="class 'cat' has 1 image, too few for a validation split"):
        data.open_dataset(f"folder:{tmp_path / 'tiny'}")
    write_images(tmp_path / "broken", count=3)
    (tmp_path / "broken" / "dog" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(data.ImageFolderError, match=r"cannot be decoded as images, e\.g\. .*broken/dog/1\.png"):
        data.open_dataset(f"folder:{tmp_path / 'broken'}")
    source = data.open_dataset(f"folder:{tmp_path / 'broken'}", verify_images=False)  # 3 x 1 validation images
    with pytest.raises(ValueError, match=r"split 'validation\[3:\]' holds no example \(validation has 3\)"):
        source.epochs("validation[3:]", batch_size=2)
    with pytest.raises(ValueError, match="3 examples make no batch of 4"):
        source.epochs("validation", batch_size=4, drop_remainder=True)


def test_folder_errors_for_links_names_and_layouts_name_the_file_and_the_fix(tmp_path):
    write_images(tmp_path / "loop", count=2)
    os.symlink(tmp_path / "loop" / "cat" / "a.jpg", tmp_path / "loop" / "cat" / "a.jpg")  # a link to itself
    with pytest.raises(data.ImageFolderError, match=r"loop/cat/a\.jpg: cannot tell what it is .*loops"):
        data.open_dataset(f"folder:{tmp_path / 'loop'}")
    write_images(tmp_path / "latin", count=2)
    os.rename(tmp_path / "latin" / "dog" / "0.jpg", os.fsencode(tmp_path / "latin" / "dog") + b"/caf\xe9.jpg")
    with pytest.raises(data.ImageFolderError, match=r"caf\\xe9\.jpg'?: the file name is not valid UTF-8.*Rename"):
        data.open_dataset(f"folder:{tmp_path / 'latin'}")
    for split in ("train", "test"):
        write_images(tmp_path / "splits" / split, count=2)
    with pytest.raises(data.ImageFolderError, match=r"holds no image .*folder of splits \(train, test\).*rename the "
                                                    r"held-out folder to val/"):
        data.open_dataset(f"folder:{tmp_path / 'splits'}")


def test_tfds_name_that_is_not_image_classification_is_refused():
    with pytest.raises(data.NotImageClassificationError, match="--dataset=glue: the tfds data set is not image "
                                                               "classification"):
        data.open_dataset("glue")
    with pytest.raises(ValueError, match="Unknown --dataset 'no_such_data'"):
        data.open_dataset("no_such_data")


# ------------------------------------------------------------------------------------------ preprocessing
def test_center_crop_equals_numpy_reference():
    image = np.random.default_rng(0).integers(0, 256, (73, 100, 3), dtype=np.uint8)
    # 64 / 0.875 -> 73: the shorter side is already 73, so the view is the central 64 x 64 window.
    np.testing.assert_array_equal(imagenet_preprocessing.eval_view(image, 64).numpy(), image[4:68, 18:82])
    view = imagenet_preprocessing.eval_view(np.repeat(np.repeat(image, 2, 0), 2, 1), 64).numpy()
    assert view.shape == (64, 64, 3)


def test_random_resized_crop_windows_respect_scale_and_ratio():
    for seed in range(200):
        top, left, h, w = (int(v) for v in imagenet_preprocessing.random_resized_crop_window([seed, 3], 120, 90))
        assert 0 <= top and top + h <= 120 and 0 <= left and left + w <= 90
        assert 0.08 * 120 * 90 * 0.9 <= h * w <= 120 * 90
        assert 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1


def _views(pipeline, epoch):
    out = {}
    for images, _, indices in pipeline.indexed_epoch(epoch):
        out.update({int(i): x for i, x in zip(indices.numpy(), images.numpy())})
    return out


def test_train_views_are_a_function_of_data_seed_epoch_and_index(image_folder):
    source = data.open_dataset(f"folder:{image_folder}", image_size=SIZE)
    pipeline = source.epochs("train", batch_size=8, seed=0, data_seed=5)
    other_order = source.epochs("train", batch_size=8, seed=1, data_seed=5)
    epoch0, again, reordered, epoch1 = (_views(pipeline, 0), _views(pipeline, 0), _views(other_order, 0),
                                        _views(pipeline, 1))
    assert sorted(epoch0) == list(range(21))
    for i in epoch0:
        np.testing.assert_array_equal(epoch0[i], again[i])
        np.testing.assert_array_equal(epoch0[i], reordered[i])
        assert not np.array_equal(epoch0[i], epoch1[i])
    order = lambda p, e: np.concatenate([i for _, _, i in p.indexed_epoch(e).as_numpy_iterator()])  # noqa: E731
    assert not np.array_equal(order(pipeline, 0), order(other_order, 0))


def test_normalization_uses_the_recorded_mean_and_std(tmp_path):
    for name in CLASSES:
        (tmp_path / name).mkdir()
        for i in range(2):
            (tmp_path / name / f"{i}.png").write_bytes(tf.io.encode_png(np.full((20, 30, 3), 255, np.uint8)).numpy())
    source = data.open_dataset(f"folder:{tmp_path}", image_size=16)
    stats = source.describe()["normalization"]
    images, _ = next(iter(source.evaluation(batch_size=3)))
    expected = (1 - np.array(stats["mean"])) / np.array(stats["std"])
    np.testing.assert_allclose(images.numpy(), np.broadcast_to(expected, (3, 16, 16, 3)), rtol=1e-5)


def test_teacher_cache_serves_a_streaming_pipeline(image_folder, tmp_path):
    from tfadakd import models, teacher_cache

    source = data.open_dataset(f"folder:{image_folder}", image_size=SIZE)
    pipeline = source.epochs("train", batch_size=8, seed=0)
    teacher = models.build("resnet8", num_classes=3, input_shape=source.image_shape)
    cache = teacher_cache.TeacherCache(tmp_path / "cache").build(teacher, pipeline, epochs=2, verbose=0)
    for (x, _), (batch, _) in zip(pipeline.epoch(1), cache.attach(pipeline).epoch(1)):
        np.testing.assert_allclose(batch["teacher_logits"], teacher(x, training=False), atol=1e-4)
    with pytest.raises(teacher_cache.CacheMismatchError, match="image_size"):
        cache.verify(teacher, data.open_dataset(f"folder:{image_folder}", image_size=24).epochs("train"), 2)


# ------------------------------------------------------------------------------------------ tfds (mock)
def test_imagenet2012_pipeline_on_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=6, data_dir=str(tmp_path)):
        source = data.open_dataset("imagenet2012", data_dir=str(tmp_path), image_size=SIZE)
        assert source.num_classes == 1000 and source.evaluation_split == "validation"
        assert source.describe()["preprocessing"] == "imagenet"
        images, labels, indices = next(iter(source.epochs("train", batch_size=4, seed=0).indexed_epoch(0)))
        first = [x for x, _ in source.evaluation(batch_size=3).as_numpy_iterator()]
        second = [x for x, _ in source.evaluation(batch_size=3).as_numpy_iterator()]
    assert images.shape == (4, SIZE, SIZE, 3) and images.dtype == tf.float32
    assert labels.dtype == tf.int32 and np.all((labels.numpy() >= 0) & (labels.numpy() < 1000))
    assert sorted(indices.numpy()) != [] and np.all(indices.numpy() < 6)
    low = (0 - np.array(imagenet_preprocessing.MEAN)) / np.array(imagenet_preprocessing.STD)
    high = (1 - np.array(imagenet_preprocessing.MEAN)) / np.array(imagenet_preprocessing.STD)
    assert np.all(images.numpy() >= low - 1e-4) and np.all(images.numpy() <= high + 1e-4)
    assert images.numpy().std() > 0.1  # not a constant image
    assert sum(len(x) for x in first) == 6
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------ data identity
def swap_two_images(root):
    """Moves one image of cat/ to dog/ and one of dog/ to cat/: the same classes and counts, other files."""
    os.rename(root / "cat" / "0.jpg", root / "cat" / "moved.jpg")
    os.rename(root / "dog" / "0.jpg", root / "cat" / "0.jpg")
    os.rename(root / "cat" / "moved.jpg", root / "dog" / "0.jpg")


def test_a_cache_built_on_a_folder_is_refused_once_two_images_swap_classes(tmp_path):
    from tfadakd.teacher_cache import CacheMismatchError, TeacherCache

    root = write_images(tmp_path / "pets")
    dataset = data.open_dataset(f"folder:{root}", image_size=SIZE)
    before = dataset.epochs("train", batch_size=8, data_seed=0)
    teacher = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.GlobalAveragePooling2D(),
                                keras.layers.Dense(3)])
    cache = TeacherCache(tmp_path / "cache").build(teacher, before, 1, verbose=0)
    swap_two_images(root)
    after = data.open_dataset(f"folder:{root}", image_size=SIZE).epochs("train", batch_size=8, data_seed=0)
    assert before.num_examples == after.num_examples  # what the manifest used to compare: unchanged
    old, new = before.description["examples"], after.description["examples"]
    assert old != new and set(old["classes"]) == set(CLASSES) and old["classes"]["fox"] == new["classes"]["fox"]
    with pytest.raises(CacheMismatchError, match="other files.*class cat: files replaced, moved or modified; "
                                                 "class dog: files replaced, moved or modified"):
        cache.build(teacher, after, 1, verbose=0)
    (root / "fox" / "new.png").write_bytes((root / "fox" / "1.png").read_bytes())  # one more image
    grown = data.open_dataset(f"folder:{root}", image_size=SIZE).epochs("train", batch_size=8, data_seed=0)
    assert "class fox: 7 -> 8 files" in data.identity.describe_change(new, grown.description["examples"])
    assert directory_name(f"folder:{root}") != directory_name(f"folder:{tmp_path / 'other' / 'pets'}")


def test_a_resume_or_a_teacher_on_changed_files_is_refused_naming_the_change(tmp_path):
    """A teacher trained by the apps on a folder; then two images swap classes: resuming the teacher's run and
    distilling from it both exit 2 naming the classes, and nothing is trained."""
    root = write_images(tmp_path / "pets")
    out = tmp_path / "runs"
    common = [f"--dataset=folder:{root}", f"--image_size={SIZE}", "--batch_size=8", "--lr_milestones=1",
              "--verbose=0", f"--output_dir={out}"]

    def run(app, *args):
        return subprocess.run([sys.executable, str(REPO / "apps" / app), *common, *args], capture_output=True,
                              text=True, timeout=600, cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))

    proc = run("train_teacher.py", "--model=resnet8", "--epochs=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    teacher_dir = out / directory_name(f"folder:{root}") / "resnet8"
    recorded = json.loads((teacher_dir / "config.json").read_text())["training_data"]
    assert recorded["examples"]["classes"]["cat"][0] == 7  # 8 images, one held out for validation
    swap_two_images(root)
    metrics = (teacher_dir / "metrics.csv").read_text()
    proc = run("train_teacher.py", "--model=resnet8", "--epochs=2")
    assert proc.returncode == 2 and "started on other training examples" in proc.stderr, proc.stderr[-3000:]
    assert "class cat: files replaced, moved or modified" in proc.stderr
    assert (teacher_dir / "metrics.csv").read_text() == metrics
    assert json.loads((teacher_dir / "config.json").read_text())["training_data"] == recorded  # the record kept
    proc = run("distill.py", "--teacher=resnet8", "--student=resnet8", "--epochs=1")
    assert proc.returncode == 2 and "the data has changed since" in proc.stderr, proc.stderr[-3000:]
    assert "class dog: files replaced, moved or modified" in proc.stderr
