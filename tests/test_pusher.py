"""components/pusher/executor.py: atomic pushes into the serving directory."""
import modules  # noqa: F401  (tf_keras before tensorflow)

import json
import os

import pytest

from components.pusher import executor


def listing(folder):
    """Every path under `folder`, relative, with file contents."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), folder)] = None
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


def write_files(folder, version):
    with open(os.path.join(folder, "model.tflite"), "wb") as f:
        f.write(b"tflite")
    os.makedirs(os.path.join(folder, "saved_model"))
    with open(os.path.join(folder, "saved_model", "saved_model.pb"), "w") as f:
        f.write(version)


def temp_folders(serving):
    return [name for name in os.listdir(serving) if name.startswith(executor.TEMP_PREFIX)]


def test_push_creates_the_version_folder_with_its_files_and_no_temp_folder(tmp_path):
    serving = str(tmp_path / "serving")
    target = executor.push_atomically(serving, write_files)
    version = os.path.basename(target)
    assert os.path.dirname(target) == serving and version.isdigit()
    assert listing(target) == {"model.tflite": b"tflite", "saved_model": None,
                               "saved_model/saved_model.pb": version.encode()}
    assert temp_folders(serving) == []
    assert os.listdir(serving) == [version]


def test_failed_write_leaves_the_serving_dir_exactly_as_before(tmp_path):
    serving = str(tmp_path / "serving")
    executor.push_atomically(serving, write_files)
    before = listing(serving)

    def failing(folder, version):
        write_files(folder, version)  # half-written, then it breaks
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        executor.push_atomically(serving, failing)
    assert listing(serving) == before
    assert temp_folders(serving) == []


def test_existing_version_folder_is_never_overwritten(tmp_path, monkeypatch):
    serving = tmp_path / "serving"
    for taken in ("1000", "1001"):
        (serving / taken).mkdir(parents=True)
        (serving / taken / "keep.txt").write_text(taken)
    monkeypatch.setattr(executor.time, "time", lambda: 1000.4)
    assert executor.free_version(str(serving)) == "1002"
    target = executor.push_atomically(str(serving), write_files)
    assert os.path.basename(target) == "1002"
    for taken in ("1000", "1001"):
        assert listing(str(serving / taken)) == {"keep.txt": taken.encode()}


def test_version_taken_during_the_push_is_not_overwritten(tmp_path):
    serving = str(tmp_path / "serving")

    def racing(folder, version):
        write_files(folder, version)
        other = os.path.join(serving, version)  # another pusher takes the name meanwhile
        os.makedirs(other)
        with open(os.path.join(other, "theirs.txt"), "w") as f:
            f.write("theirs")

    with pytest.raises(FileExistsError):
        executor.push_atomically(serving, racing)
    (version,) = os.listdir(serving)
    assert listing(os.path.join(serving, version)) == {"theirs.txt": b"theirs"}


def test_remove_incomplete_removes_stale_temp_folders_only(tmp_path):
    serving = tmp_path / "serving"
    stale = serving / f"{executor.TEMP_PREFIX}123-45"
    (stale / "saved_model").mkdir(parents=True)
    (stale / "saved_model" / "x.pb").write_text("partial")
    (serving / "7").mkdir()
    (serving / "7" / "model.tflite").write_text("ok")
    executor.remove_incomplete(str(serving))
    assert sorted(os.listdir(serving)) == ["7"]
    assert (serving / "7" / "model.tflite").read_text() == "ok"


def test_push_cleans_up_temp_folders_of_crashed_pushes(tmp_path):
    serving = tmp_path / "serving"
    (serving / f"{executor.TEMP_PREFIX}99-1").mkdir(parents=True)
    target = executor.push_atomically(str(serving), write_files)
    assert os.listdir(serving) == [os.path.basename(target)]


def test_already_pushed_finds_the_version_holding_the_same_quantized_model(tmp_path):
    serving = tmp_path / "serving"
    for version, artifact_id in (("100", 5), ("101", 6)):
        (serving / version).mkdir(parents=True)
        (serving / version / "model_card.json").write_text(
            json.dumps({"lineage": {"quantized_artifact_id": artifact_id}}))
    (serving / "102").mkdir()
    (serving / "102" / "model_card.json").write_text("{not json")
    assert executor.already_pushed(str(serving), 6) == str(serving / "101")
    assert executor.already_pushed(str(serving), 7) is None
    assert executor.already_pushed(str(tmp_path / "nothing_yet"), 5) is None
