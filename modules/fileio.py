"""File operations on artifact URIs, through `tf.io.gfile`.

Executors read and write artifacts at URIs that are local paths under LocalDagRunner and
`gs://...` (or any filesystem TensorFlow has a plugin for) in a cluster, so they use these
helpers instead of `open`, `os`, `glob` and `shutil`, which only know local paths.
(`os.path.join` and `os.path.dirname` are fine on URIs: the images are Linux, '/'-separated.)
"""
import json
import os
from typing import Any, Iterator, List

import tensorflow as tf

gfile = tf.io.gfile
exists = gfile.exists
isdir = gfile.isdir
makedirs = gfile.makedirs
GFile = gfile.GFile


def glob(pattern: str) -> List[str]:
    return sorted(gfile.glob(pattern))


def rmtree(path: str) -> None:
    """Removes a folder (or file) if it exists."""
    if gfile.isdir(path):
        gfile.rmtree(path)
    elif gfile.exists(path):
        gfile.remove(path)


def walk_files(folder: str) -> Iterator[str]:
    """The path of every file below `folder`, relative to it, in a stable order."""
    prefix = len(folder.rstrip("/")) + 1
    for root, dirs, names in gfile.walk(folder):
        dirs.sort()
        for name in sorted(names):
            yield os.path.join(root, name)[prefix:]


def copy(src: str, dst: str) -> None:
    makedirs(os.path.dirname(dst))
    gfile.copy(src, dst, overwrite=False)


def copytree(src: str, dst: str) -> None:
    """Copies the folder `src` to `dst`, which must not exist yet or be empty (an output
    artifact's folder, made by the orchestrator)."""
    if gfile.exists(dst) and (not gfile.isdir(dst) or next(walk_files(dst), None)):
        raise FileExistsError(dst)
    makedirs(dst)
    for name in walk_files(src):
        copy(os.path.join(src, name), os.path.join(dst, name))


def rename(src: str, dst: str) -> None:
    """A rename that never replaces `dst`. Atomic on a local or mounted POSIX filesystem
    (rename(2)); object stores such as gs:// have no atomic folder rename."""
    gfile.rename(src, dst, overwrite=False)


def read_bytes(path: str) -> bytes:
    with GFile(path, "rb") as f:
        return f.read()


def write_bytes(path: str, content: bytes) -> None:
    makedirs(os.path.dirname(path))
    with GFile(path, "wb") as f:
        f.write(content)


def read_json(path: str) -> Any:
    with GFile(path, "r") as f:
        return json.load(f)


def write_json(path: str, payload: Any, default=float) -> None:
    """`default` converts what JSON has no type for (numpy scalars, by default)."""
    write_bytes(path, json.dumps(payload, indent=1, default=default).encode("utf-8"))


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))
