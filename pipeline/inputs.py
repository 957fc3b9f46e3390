"""Checks of the input CSV before TFX starts, so a bad file fails in seconds with one line."""
import dataclasses
import glob
import os
from typing import Dict, List, Sequence

from modules.errors import UserError
from modules.reading import csvfile
from modules.settings import Csv


class UserInputError(UserError):
    """Something the user can fix: the message names the file, column or flag and what to do."""


@dataclasses.dataclass(frozen=True)
class CsvSource:
    data_root: str  # folder for CsvExampleGen
    pattern: str  # file pattern inside it
    files: List[str]
    columns: List[str]
    rows: int
    rows_without_label: int
    classes: List[str]
    left_out: Dict[str, str] = dataclasses.field(default_factory=dict)  # column: why


def check_csv(path: str, label: str, drop: Sequence[str] = (), csv: Csv = Csv()) -> CsvSource:
    """Validates the CSV file (or folder of CSV files) and returns where CsvExampleGen reads it.
    Files are read as CsvExampleGen reads them (modules.reading.csvfile: gzip, byte-order mark,
    quoting, `csv.delimiter`, `csv.na_values` as missing values).

    Each column is profiled as CsvExampleGen profiles it (modules.reading.csvfile.ColumnProfile,
    column_plan): a column with an empty name (R's write.csv writes its row names so) or an
    identifier (not in `csv.keep`) is left out, and `left_out` says why.

    Raises UserInputError for: a missing path, no CSV files, an empty or header-only file,
    text that is not UTF-8 or not CSV, duplicate or differing headers, a missing label or
    --drop or --keep column, rows with the wrong number of fields, text in a numeric
    column, numbers with a decimal comma without --decimal ,, a label with fewer than two
    classes or a different value in nearly every row.
    """
    if not os.path.exists(path):
        raise UserInputError(f"--data {path}: no such file or folder; pass a CSV file or a "
                             f"folder of CSV files")
    path = os.path.abspath(path)
    if os.path.isdir(path):
        pattern = next((p for p in ("*.csv", "*.csv.gz")
                        if glob.glob(os.path.join(path, p))), None)
        if pattern is None:
            raise UserInputError(f"--data {path}: the folder has no *.csv (or *.csv.gz) files")
        files, data_root = sorted(glob.glob(os.path.join(path, pattern))), path
    else:
        files, data_root, pattern = [path], os.path.dirname(path), os.path.basename(path)
    if label in drop:
        raise UserInputError(f"--drop {label}: that is the label column (--label); "
                             f"remove it from --drop")
    header = None
    rows = missing_label = 0
    classes = set()
    profiles = None
    markers = csvfile.markers_set(csv.na_values)
    for file in files:
        if os.path.getsize(file) == 0:
            raise UserInputError(f"{file}: the file is empty; it needs a header line and rows")
        file_rows = 0
        with csvfile.open_binary(file) as binary:
            records = csvfile.read_rows(binary, file, csv.delimiter)
            columns = [name.strip() for name in next(records, (0, [""]))[1]]
            _check_header(file, columns, label, drop, csv.keep)
            if header is not None and columns != header:
                raise UserInputError(f"{file}: its header differs from {files[0]}'s; every "
                                     f"CSV file of --data must have the same columns in the "
                                     f"same order")
            header = columns
            label_index = columns.index(label)
            profiles = profiles or [csvfile.ColumnProfile() for _ in columns]
            for line, record in records:
                if len(record) != len(columns):
                    raise UserInputError(
                        f"{file}, line {line}: {len(record)} fields where the header has "
                        f"{len(columns)}; fix or remove that row (is --delimiter right?)")
                file_rows += 1
                where = f"{file}, line {line}"
                for profile, field in zip(profiles, record):
                    profile.add(field, where, csv.decimal, markers)
                if csvfile.is_missing(record[label_index], csv.na_values):
                    missing_label += 1
                else:
                    classes.add(record[label_index].strip())
        if file_rows == 0:
            raise UserInputError(f"{file}: has a header but no data rows")
        rows += file_rows
    _check_numeric_columns(header, profiles, label)
    if len(classes) < 2:
        found = f"only {sorted(classes)!r}" if classes else "no values"
        raise UserInputError(f"--label {label}: the column has {found}; a classifier needs "
                             f"at least two classes")
    try:
        plan = csvfile.column_plan(header, profiles, csv.keep, csv.decimal)["columns"]
    except csvfile.CsvFormatError as error:
        raise UserInputError(str(error)) from None
    left_out = {c["name"]: c["left_out"] for c in plan if c["left_out"]}
    if label in left_out:
        raise UserInputError(f"--label {label}: {left_out[label]}; a classifier needs "
                             f"classes that repeat (is it the right column?)")
    return CsvSource(data_root, pattern, files, header, rows, missing_label, sorted(classes),
                     left_out)


def _check_numeric_columns(header: List[str], profiles: List[csvfile.ColumnProfile],
                           label: str) -> None:
    """A column of numbers with a few text cells (under 10%) is a numeric column with bad
    cells, which TFX would silently read all as text. Reject it, naming the first bad cell
    (and the other decimal mark, when some numbers have it)."""
    for name, profile in zip(header, profiles):
        numbers = profile.numbers + profile.others
        texts = profile.values - numbers
        if not name or name == label or not texts or texts * 9 > numbers:
            continue
        value, where = profile.first_text
        other = (f"; values such as '{profile.first_other[0]}' have the other decimal mark "
                 f"(--decimal)" if profile.others else "")
        raise UserInputError(f"{where}, column '{name}': '{value}' is not a number but "
                             f"{numbers} other values of the column are; fix that value, "
                             f"leave it empty, or add it to --na-values if it marks a missing "
                             f"value{other}")


def _check_header(file: str, columns: List[str], label: str, drop: Sequence[str],
                  keep: Sequence[str]) -> None:
    seen = set()
    for name in columns:
        if name and name in seen:  # unnamed columns (row names) are left out, not duplicates
            raise UserInputError(f"{file}: column '{name}' appears twice in the header; "
                                 f"rename one of them")
        seen.add(name)
    if not any(columns):
        raise UserInputError(f"{file}: the first line is empty; it must be the header")
    if label not in seen:
        raise UserInputError(f"{file}: no column '{label}' to use as label; pass --label "
                             f"with one of: {', '.join(columns)}")
    for flag, names in (("--drop", drop), ("--keep", keep)):
        for name in names:
            if name not in seen:
                raise UserInputError(f"{flag} {name}: no such column in {file}; columns are: "
                                     f"{', '.join(columns)}")
