"""How the pipeline's cost grows with the rows: the taxi CSV replicated x1, x10 and x40.

Each replica of a row gets its numeric columns jittered (times 1 + 1% Gaussian noise,
integers rounded; the label and `tips` untouched), so no two rows are identical. The CSVs
are generated at run time (not committed) under --workdir. Each size runs
`local_runner.py --quick` in a child process; the benchmark prints per size the wall time,
the peak resident memory of the run (the child and what it waited for, from os.wait4) and
each component's time and the peak memory while it ran, then as its last line one JSON
object: {"x1": {"rows", "seconds", "peak_rss_mb", "components": {...},
"component_peak_rss_mb": {...}}, "x10": {...}, "x40": {...}}

    python benchmarks/scale.py [--sizes 1,10,40] [--workdir runs/scale] [-- runner flags]
"""
import argparse
import csv
import json
import os
import random
import shutil
import sys

from common import ROOT, component_peaks, print_result, run_pipeline

from pipeline import configs


def replicate(source: str, path: str, times: int, seed: int = 0) -> int:
    """Writes `times` jittered copies of every row of `source` to `path`; returns the rows."""
    rng = random.Random(seed)
    rows = 0
    with open(source, newline="") as f_in, open(path, "w", newline="") as f_out:
        reader, writer = csv.reader(f_in), csv.writer(f_out)
        header = next(reader)
        writer.writerow(header)
        keep = {header.index(c) for c in (configs.DEFAULT_LABEL, *configs.DEFAULT_DROP)}
        data = list(reader)
        for copy in range(times):
            for row in data:
                if copy:
                    row = [_jitter(v, rng) if i not in keep else v for i, v in enumerate(row)]
                writer.writerow(row)
                rows += 1
    return rows


def _jitter(value: str, rng: random.Random) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    jittered = number * (1 + 0.01 * rng.gauss(0, 1))
    return str(round(jittered)) if value.lstrip("-").isdigit() else repr(jittered)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1,10,40")
    p.add_argument("--workdir", default=os.path.join(ROOT, "runs", "scale"))
    p.add_argument("extra", nargs="*", help="more local_runner.py flags (after --)")
    args = p.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    results = {}
    for size in (int(s) for s in args.sizes.split(",")):
        name = f"x{size}"
        folder = os.path.join(args.workdir, name)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(os.path.join(folder, "data"))
        rows = replicate(configs.default_data_path(),
                         os.path.join(folder, "data", "taxi.csv"), size)
        timeline = []
        code, seconds, rss = run_pipeline(
            ["--data", os.path.join(folder, "data", "taxi.csv"), "--drop", "tips",
             "--output", os.path.join(folder, "out"), "--quick", *args.extra],
            os.path.join(folder, "run.log"), timeline)
        if code != 0:
            print(f"{name}: the run failed (exit {code}); see {folder}/run.log", flush=True)
            results[name] = {"rows": rows, "failed": True, "exit_code": code}
            continue
        summary = json.load(open(os.path.join(folder, "out", "report", "summary.json")))
        results[name] = {"rows": rows, "seconds": round(seconds, 1),
                         "peak_rss_mb": round(rss), "components": summary["timings_s"],
                         "component_peak_rss_mb": component_peaks(
                             os.path.join(folder, "run.log"), timeline)}
        slowest = sorted(summary["timings_s"].items(), key=lambda kv: -kv[1])[:5]
        peaks = sorted(results[name]["component_peak_rss_mb"].items(), key=lambda kv: -kv[1])
        print(f"{name}: {rows} rows, {seconds:.0f} s, peak RSS {rss:.0f} MB; slowest: "
              + ", ".join(f"{k} {v:.0f} s" for k, v in slowest) + "; peak MB while running: "
              + ", ".join(f"{k} {v}" for k, v in peaks[:5]), flush=True)
    print_result(results)


if __name__ == "__main__":
    sys.exit(main())
