"""Reading a CSV file the way users' files are written, shared by the preflight check
(pipeline/inputs.py) and the ExampleGen executor (components/csv_example_gen).

What a user's CSV may have, and what happens to it:
- a UTF-8 byte-order mark (Excel's "CSV UTF-8"): dropped;
- CRLF or LF line endings; fields quoted with '"' holding the delimiter, doubled quotes or
  newlines (RFC 4180, Python's csv module);
- any one-character delimiter (',' by default, ';' from European spreadsheets, tab);
- gzip compression (`.gz`);
- missing-value markers (`NA` from R, `NULL` and `\\N` from SQL exports, `#N/A` from
  spreadsheets, pandas' defaults): `is_missing` says which cells are missing;
- a decimal comma (`129,0`, European spreadsheets), read as a number with `--decimal ,`:
  without it, a column of such numbers (or, with it, of numbers with a decimal point) is
  OTHER_DECIMAL, which both readers refuse with a line naming the column and the flag
  (never silently text).
Text that is not UTF-8 raises CsvFormatError naming the file.

`ColumnProfile` sums up one column's values (type, missing, range, distinct values) row by
row or merged across Beam bundles, the same way in both readers; `identifier` and
`problem` are the two decisions taken from it: a column left out as an identifier, and a
column that stops the run.
"""
import contextlib
import csv
import dataclasses
import functools
import gzip
import io
import math
import re
from typing import Any, BinaryIO, Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple

from modules.errors import UserError

# pandas.read_csv's default na_values (pandas 2.x), which most users' tools agree with.
PANDAS_NA_VALUES = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                    "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a",
                    "nan", "null")

# inferred column types; OTHER_DECIMAL: every value a number, some written with the other
# decimal mark than --decimal's ("129,0" with ".", "12.5" with ","): a column the readers
# refuse, naming --decimal
INT, FLOAT, STRING, EMPTY = "int", "float", "string", "empty"
OTHER_DECIMAL = "other_decimal"
_WIDTH = (EMPTY, INT, FLOAT, OTHER_DECIMAL, STRING)  # widen() takes the later of two
_RANK = {kind: rank for rank, kind in enumerate(_WIDTH)}
_OTHER_MARK = {".": ",", ",": "."}


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


def to_float(value: str, decimal: str = ".") -> float:
    """The number `value` writes with `decimal` as its decimal mark; ValueError otherwise.
    With a decimal mark other than ".", a "." is not part of a number ("1.5" is text, as
    "1,5" is with "."): thousands separators are not read."""
    value = value.strip()
    if decimal != ".":
        if "." in value:
            raise ValueError(value)
        value = value.replace(decimal, ".", 1)
    return float(value)


def value_type(value: str, decimal: str = ".") -> str:
    """INT, FLOAT, OTHER_DECIMAL or STRING: the narrowest type that reads `value` (not a
    missing one) with the decimal mark `decimal` (OTHER_DECIMAL: with the other mark)."""
    value = value.strip()
    try:
        int(value)
        return INT
    except ValueError:
        pass
    for mark, kind in ((decimal, FLOAT), (_OTHER_MARK[decimal], OTHER_DECIMAL)):
        try:
            to_float(value, mark)
            return kind
        except ValueError:
            pass
    return STRING


def widen(current: str, new: str) -> str:
    """The type that holds values of both: EMPTY < INT < FLOAT < OTHER_DECIMAL < STRING."""
    return current if _RANK[current] >= _RANK[new] else new


# Identifier columns (modules.reading.csvfile.identifier): judged on the first DISTINCT_CAP distinct
# values of a column, once it has MIN_IDENTIFIER_VALUES values or more.
DISTINCT_CAP = 50_000
MIN_IDENTIFIER_VALUES = 20
NEARLY_UNIQUE = 0.95  # text: this share of values distinct
_ID_NAME = re.compile(r"(?i:^(id|uuid|guid|key|index|row_?(id|number|num|name)s?|rownames?)$)"
                      r"|(?i:[_ .\-](id|uuid|guid|key|number|no)$)|[a-z](Id|ID)$")


def markers_set(na_values: Sequence[str]) -> FrozenSet[str]:
    return frozenset(value.strip() for value in na_values)


@functools.lru_cache(maxsize=2 ** 16)
def _read(value: str, decimal: str, na_values: FrozenSet[str]
          ) -> Tuple[str, Optional[str], Optional[float]]:
    """(the value stripped, its type or None when missing, its number or None), cached:
    most cells repeat a value seen before (categories, small integers, rounded amounts)."""
    value = value.strip()
    if not value or value in na_values:
        return value, None, None
    kind = value_type(value, decimal)
    if kind == STRING:
        return value, kind, None
    return value, kind, to_float(value, _OTHER_MARK[decimal] if kind == OTHER_DECIMAL
                                 else decimal)


@dataclasses.dataclass
class ColumnProfile:
    """One column's values summed up: its type, how many values are present and missing,
    how many read as numbers (with the decimal mark, or with the other one), their range,
    and its distinct values among the first `counted` (tracked until a value with decimals
    appears, which no identifier has, and up to DISTINCT_CAP distinct values).
    `first_text` / `first_other`: the first value that is not a number / that has the other
    decimal mark (OTHER_DECIMAL), with where it was (file, line)."""
    kind: str = EMPTY
    values: int = 0
    missing: int = 0
    numbers: int = 0
    others: int = 0
    low: float = math.inf
    high: float = -math.inf
    capped_distinct: int = 0  # distinct values once `seen` reached DISTINCT_CAP
    counted: int = 0
    first_text: Optional[Tuple[str, str]] = None
    first_other: Optional[Tuple[str, str]] = None
    tracked: bool = True  # no value with decimals yet: distinct values are counted
    seen: Optional[set] = dataclasses.field(default_factory=set, repr=False)

    def add(self, value: str, where: str, decimal: str, na_values: FrozenSet[str]) -> None:
        """One cell; `na_values` as a frozenset (markers_set). Called for every cell of
        the CSV by both readers, so written for speed."""
        value, kind, number = _read(value, decimal, na_values)
        if kind is None:
            self.missing += 1
            return
        self.values += 1
        if _RANK[kind] > _RANK[self.kind]:
            self.kind = kind
        if number is not None:
            if number < self.low:
                self.low = number
            if number > self.high:
                self.high = number
            if kind == OTHER_DECIMAL:
                self.others += 1
                self.first_other = self.first_other or (value, where)
            else:
                self.numbers += 1
        elif self.first_text is None:
            self.first_text = (value, where)
        if kind is FLOAT or kind is OTHER_DECIMAL:  # numbers with decimals: no identifier
            if self.tracked:
                self.tracked, self.seen, self.capped_distinct, self.counted = False, None, 0, 0
        elif self.seen is not None:
            self.seen.add(value)
            self.counted += 1
            if len(self.seen) >= DISTINCT_CAP:  # judged on what was seen: bounded memory
                self.capped_distinct, self.seen = len(self.seen), None

    def merge(self, other: "ColumnProfile") -> "ColumnProfile":
        merged = ColumnProfile(
            widen(self.kind, other.kind), self.values + other.values,
            self.missing + other.missing, self.numbers + other.numbers,
            self.others + other.others, min(self.low, other.low), max(self.high, other.high),
            first_text=self.first_text or other.first_text,
            first_other=self.first_other or other.first_other, seen=None)
        merged.tracked = self.tracked and other.tracked
        if not merged.tracked:
            return merged
        merged.counted = self.counted + other.counted
        if self.seen is not None and other.seen is not None:
            merged.seen = self.seen | other.seen
            if len(merged.seen) >= DISTINCT_CAP:
                merged.capped_distinct, merged.seen = len(merged.seen), None
        else:  # past the cap on one side: distinct values at most the sum
            merged.capped_distinct = self.distinct + other.distinct
        return merged

    @property
    def distinct(self) -> int:
        """Distinct values among the first `counted` (0 when not tracked)."""
        return len(self.seen) if self.seen is not None else self.capped_distinct

    def to_dict(self) -> Dict[str, object]:
        """What the column report keeps (JSON): no values, no infinities."""
        numeric = self.numbers + self.others > 0
        return {"type": self.kind, "values": self.values, "missing": self.missing,
                "numbers": self.numbers + self.others,
                "min": self.low if numeric else None, "max": self.high if numeric else None,
                "distinct": self.distinct if self.tracked and self.counted else None,
                "distinct_of": self.counted if self.tracked and self.counted else None}


def identifier(name: str, profile: ColumnProfile) -> Optional[str]:
    """Why the column is an identifier, or None. An identifier has a different value in
    (nearly) every row and no order a label could use, so as a feature it can only add
    noise or leak the order of the rows:
    - integers, every one different, in a dense range (at most 2 x the rows: row numbers,
      sequence numbers), or named like an identifier ("id", "customer_id", "CustomerID",
      "RowNumber", "rownames");
    - text with NEARLY_UNIQUE of its values different (ids, codes, names, free text: a
      category seen once cannot be learned).
    Numbers with decimals are never identifiers: a unique amount is a real feature.
    Columns of fewer than MIN_IDENTIFIER_VALUES values are never judged."""
    if profile.values < MIN_IDENTIFIER_VALUES or not profile.tracked or not profile.counted:
        return None
    if profile.kind == INT and profile.distinct == profile.counted:
        if profile.high - profile.low + 1 <= 2 * profile.values:
            return "a different integer in every row, in a dense range: row numbers"
        if _ID_NAME.search(name):
            return "a different integer in every row, and named as an identifier"
    if profile.kind == STRING and profile.distinct >= NEARLY_UNIQUE * profile.counted:
        among = (f"{profile.counted} rows" if profile.counted == profile.values
                 else f"its first {profile.counted} values")
        return (f"text with {profile.distinct} different values in {among}: an identifier, "
                f"code or name, not a category")
    return None


def problem(name: str, profile: ColumnProfile, decimal: str) -> Optional[str]:
    """Why the column cannot be read as it is (the run stops), or None: numbers written
    with the other decimal mark than `decimal`."""
    if profile.kind != OTHER_DECIMAL:
        return None
    value, where = profile.first_other
    if decimal == ".":
        return (f"{where}, column '{name}': values such as '{value}' are numbers with a "
                f"decimal comma; pass --decimal , to read them (or, if the comma separates "
                f"thousands, remove it)")
    return (f"{where}, column '{name}': values such as '{value}' are numbers with a decimal "
            f"point while --decimal is ','; leave --decimal out to read them (or, if the "
            f"point separates thousands, remove it)")


COLUMNS_FILE = "columns.json"  # the column plan, in CsvExampleGen's Examples artifact


def column_plan(columns: Sequence[str], profiles: Sequence[ColumnProfile],
                keep: Sequence[str] = (), decimal: str = ".") -> Dict[str, Any]:
    """What becomes of each column: {"columns": [{"name", "type", "left_out" (why, or
    None), profile figures...}]}. Raises CsvFormatError for a column that cannot be read
    (`problem`)."""
    plan = []
    for name, profile in zip(columns, profiles):
        stop = problem(name, profile, decimal) if name else None
        if stop:
            raise CsvFormatError(stop)
        left_out = ("no name in the header (R's row names?)" if not name else
                    None if name in keep else identifier(name, profile))
        plan.append({"name": name, "left_out": left_out, **profile.to_dict()})
    return {"columns": plan}
