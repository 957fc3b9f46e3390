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
