"""Checks of the input CSV before TFX starts, so a bad file fails in seconds with one line."""
import dataclasses
import glob
import os
from typing import List, Sequence

from modules import csvfile
from modules.errors import UserError
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
    unnamed_columns: int = 0


def check_csv(path: str, label: str, drop: Sequence[str] = (), csv: Csv = Csv()) -> CsvSource:
    """Validates the CSV file (or folder of CSV files) and returns where CsvExampleGen reads it.
    Files are read as CsvExampleGen reads them (modules.csvfile: gzip, byte-order mark,
    quoting, `csv.delimiter`, `csv.na_values` as missing values).

    A column with an empty name (R's write.csv writes its row names so) is not a feature:
    CsvExampleGen leaves it out, and `unnamed_columns` counts it.

    Raises UserInputError for: a missing path, no CSV files, an empty or header-only file,
    text that is not UTF-8 or not CSV, duplicate or differing headers, a missing label or
    --drop column, rows with the wrong number of fields, text in a numeric column, and a
    label with fewer than two classes.
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
    numeric = None  # per column: [numbers, texts, first text (value, file, line)]
    for file in files:
        if os.path.getsize(file) == 0:
            raise UserInputError(f"{file}: the file is empty; it needs a header line and rows")
        file_rows = 0
        with csvfile.open_binary(file) as binary:
            records = csvfile.read_rows(binary, file, csv.delimiter)
            columns = [name.strip() for name in next(records, (0, [""]))[1]]
            _check_header(file, columns, label, drop)
            if header is not None and columns != header:
                raise UserInputError(f"{file}: its header differs from {files[0]}'s; every "
                                     f"CSV file of --data must have the same columns in the "
                                     f"same order")
            header = columns
            label_index = columns.index(label)
            numeric = numeric or [[0, 0, None] for _ in columns]
            for line, record in records:
                if len(record) != len(columns):
                    raise UserInputError(
                        f"{file}, line {line}: {len(record)} fields where the header has "
                        f"{len(columns)}; fix or remove that row (is --delimiter right?)")
                file_rows += 1
                for i, field in enumerate(record):
                    if not csvfile.is_missing(field, csv.na_values):
                        _count_number(numeric[i], field, file, line)
                if csvfile.is_missing(record[label_index], csv.na_values):
                    missing_label += 1
                else:
                    classes.add(record[label_index].strip())
        if file_rows == 0:
            raise UserInputError(f"{file}: has a header but no data rows")
        rows += file_rows
    _check_numeric_columns(header, numeric, label)
    if len(classes) < 2:
        found = f"only {sorted(classes)!r}" if classes else "no values"
        raise UserInputError(f"--label {label}: the column has {found}; a classifier needs "
                             f"at least two classes")
    return CsvSource(data_root, pattern, files, header, rows, missing_label, sorted(classes),
                     header.count(""))


def _count_number(counts: list, field: str, file: str, line: int) -> None:
    if csvfile.value_type(field) != csvfile.STRING:
        counts[0] += 1
    else:
        counts[1] += 1
        if counts[2] is None:
            counts[2] = (field.strip(), file, line)


def _check_numeric_columns(header: List[str], numeric: list, label: str) -> None:
    """A column of numbers with a few text cells (under 10%) is a numeric column with bad
    cells, which TFX would silently read all as text. Reject it, naming the first bad cell."""
    for name, (numbers, texts, first_text) in zip(header, numeric):
        if not name or name == label or first_text is None or texts * 9 > numbers:
            continue
        value, file, line = first_text
        raise UserInputError(f"{file}, line {line}, column '{name}': '{value}' is not a number "
                             f"but {numbers} other values of the column are; fix that value, "
                             f"leave it empty, or add it to --na-values if it marks a missing "
                             f"value")


def _check_header(file: str, columns: List[str], label: str, drop: Sequence[str]) -> None:
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
    for name in drop:
        if name not in seen:
            raise UserInputError(f"--drop {name}: no such column in {file}; columns are: "
                                 f"{', '.join(columns)}")
