"""Reading a CSV file the way users' files are written, shared by the preflight check
(pipeline/inputs.py) and the ExampleGen executor (components/csv_example_gen).

What a user's CSV may have, and what happens to it:
- a UTF-8 byte-order mark (Excel's "CSV UTF-8"): dropped;
- CRLF or LF line endings; fields quoted with '"' holding the delimiter, doubled quotes or
  newlines (RFC 4180, Python's csv module);
- any one-character delimiter (',' by default, ';' from European spreadsheets, tab);
- gzip compression (`.gz`);
- missing-value markers (`NA` from R, `NULL` and `\\N` from SQL exports, `#N/A` from
  spreadsheets, pandas' defaults): `is_missing` says which cells are missing.
Text that is not UTF-8 raises CsvFormatError naming the file.
"""
import contextlib
import csv
import gzip
import io
from typing import BinaryIO, Iterator, List, Sequence, Tuple

from modules.errors import UserError

# pandas.read_csv's default na_values (pandas 2.x), which most users' tools agree with.
PANDAS_NA_VALUES = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                    "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a",
                    "nan", "null")

INT, FLOAT, STRING, EMPTY = "int", "float", "string", "empty"  # inferred column types


class CsvFormatError(UserError):
    """A file that cannot be read as CSV: the message names the file (and line)."""


class _RawReader(io.RawIOBase):
    """A file object with only read(n) (tf.io.gfile.GFile) as the raw stream io expects."""

    def __init__(self, file):
        super().__init__()
        self._file = file

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._file.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self):
        self._file.close()
        super().close()


@contextlib.contextmanager
def open_binary(path: str, opener=open) -> Iterator[BinaryIO]:
    """The file's bytes, decompressed when it ends in .gz. `opener(path, "rb")` opens it:
    the built-in open, or tf.io.gfile / TFX's fileio for gs:// and other remote paths."""
    with io.BufferedReader(_RawReader(opener(path, "rb"))) as raw:
        if path.endswith(".gz"):
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield unzipped
        else:
            yield raw


def read_rows(binary: BinaryIO, path: str,
              delimiter: str = ",") -> Iterator[Tuple[int, List[str]]]:
    """(line number, fields) of every record, the header first; blank lines are skipped.
    A quoted field may span lines: the line number is the record's last."""
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
    reader = csv.reader(text, delimiter=delimiter, strict=True)
    try:
        for row in reader:
            if row:
                yield reader.line_num, row
    except UnicodeDecodeError as error:
        raise CsvFormatError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); "
                             f"save the file as UTF-8") from None
    except (csv.Error, gzip.BadGzipFile, EOFError, OSError) as error:
        raise CsvFormatError(f"{path}, line {reader.line_num}: cannot be read as CSV "
                             f"({error}); check the quoting and --delimiter") from None


def is_missing(value: str, na_values: Sequence[str]) -> bool:
    """An empty field, or one of the missing-value markers (surrounding spaces ignored)."""
    value = value.strip()
    return value == "" or value in na_values


def value_type(value: str) -> str:
    """INT, FLOAT or STRING: the narrowest type that reads `value` (not a missing one)."""
    value = value.strip()
    try:
        int(value)
        return INT
    except ValueError:
        pass
    try:
        float(value)
        return FLOAT
    except ValueError:
        return STRING


def widen(current: str, new: str) -> str:
    """The type that holds values of both types: EMPTY < INT < FLOAT < STRING."""
    order = (EMPTY, INT, FLOAT, STRING)
    return max(current, new, key=order.index)
