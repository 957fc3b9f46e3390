"""Where the lines a user reads go while a run's everything-else goes to its log file.

`local_runner.py` points file descriptors 1 and 2 (print(), warnings, TensorFlow's and
TFLite's C++ logs, Keras Tuner's summaries) at `<output>/logs/run.log` and sets `terminal`
to the real terminal; its logging handler writes our steps' lines there. The training loop
asks `progress_stream` where to draw an epoch progress bar: only on a terminal that is a
TTY; anywhere else (a pipe, a file, a Kubeflow pod's log) it logs one line per epoch.
"""
import sys
from typing import Optional, TextIO

terminal: Optional[TextIO] = None  # the user's terminal while stdout goes to the run's log
# `log.info(..., extra=LOG_ONLY)`: a detail for the run's log (and a pod's), which the terminal
# shows in another form (the report's summary lines say it once, at the end).
LOG_ONLY = {"terminal": False}


def progress_stream() -> Optional[TextIO]:
    """The stream to draw a progress bar on, or None when it is not a TTY."""
    stream = terminal if terminal is not None else sys.stdout
    try:
        return stream if stream.isatty() else None
    except (AttributeError, ValueError):
        return None
