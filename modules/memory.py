"""Handing memory back between models: the components share one process under LocalDagRunner."""
import contextlib
import ctypes
import ctypes.util
import gc

import tensorflow as tf

_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def release(keras_state: bool = True) -> None:
    """Drops Keras' global state and unreachable objects, and returns freed heap pages to the
    OS (glibc's malloc_trim), so the next model does not stack on the previous one.
    `keras_state=False` keeps Keras' state: where another thread is training a model
    (`clear_session` resets its layer names and TensorFlow's kernel caches under it)."""
    if keras_state:
        tf.keras.backend.clear_session()
    gc.collect()
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


@contextlib.contextmanager
def startup_frozen():
    """Takes every object alive on entry out of the garbage collector's sight (`gc.freeze`)
    until the exit: enter it once the program has imported what it runs (TensorFlow, TFX,
    Beam: about 700,000 objects that live as long as the process). Every full collection
    traversed them all, 0.42 s each time, and `release` runs one per Tuner trial and per
    trained model; Python's own full collections during graph tracing traversed them too.
    Objects made inside are collected as before. Where objects are already frozen (a local
    run enters it around the whole pipeline, a component process around its step) it does
    nothing: the outer one undoes it."""
    if gc.get_freeze_count():
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
