"""Handing memory back between models: the components share one process under LocalDagRunner."""
import ctypes
import ctypes.util
import gc

import tensorflow as tf

_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def release() -> None:
    """Drops Keras' global state and unreachable objects, and returns freed heap pages to the
    OS (glibc's malloc_trim), so the next model does not stack on the previous one."""
    tf.keras.backend.clear_session()
    gc.collect()
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)
