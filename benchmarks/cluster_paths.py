"""What the cluster paths cost on one machine: the same `local_runner.py --quick` run with ML
Metadata in SQLite (the default) and in MySQL (a MariaDB server of its own), and with Beam's
in-process FnApiRunner (the default) and Beam's portable runner (its job service and a pool
of 2 SDK worker processes, as Flink, Spark and Dataflow take a job). Each run gets an empty
system temp folder (TMPDIR), whose size after the run is printed too: a run leaves nothing
there. The MariaDB server and the Beam services are the tests' own (tests/mysql_server.py,
tests/beam_job_service.py); Debian's mariadb-server must be installed (`.ci/run` does).

The peak resident memory is the run's process tree: with the portable runner the SDK workers
are the pool's processes, not the run's, and are not counted. Each variant runs --repeats
times, alternating; the medians and their ratios to the default
are printed, then one JSON line: {"runs": {variant: {"seconds": [...], "peak_rss_mb": [...],
"temp_bytes": [...]}}, "median_seconds": {...}, "ratio_to_default": {...}}

    python benchmarks/cluster_paths.py [--repeats 1] [--rows 2500] [--workdir runs/cluster_paths]
"""
import argparse
import contextlib
import os
import shutil
import sys

from common import ROOT, median, print_result, run_pipeline

sys.path.insert(0, os.path.join(ROOT, "tests"))
from beam_job_service import portable_beam  # noqa: E402
from mysql_server import MISSING, SERVER, mariadb  # noqa: E402
from pipeline_runs import LEAN, odd_taxi_csv, quick_args  # noqa: E402

PASSWORD = "bench-Pw1"
VARIANTS = ("sqlite_direct", "mysql_direct", "sqlite_portable")


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
               for f in files if not os.path.islink(os.path.join(d, f)))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--rows", type=int, default=2500, help="rows of the taxi sample")
    p.add_argument("--workdir", default=os.path.join(ROOT, "runs", "cluster_paths"))
    args = p.parse_args()
    if not SERVER:  # `make bench` runs every script: say why this one measured nothing
        print(f"cluster_paths: skipped: {MISSING}")
        return
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    csv = odd_taxi_csv(args.workdir, rows=args.rows)
    runs = {v: {"seconds": [], "peak_rss_mb": [], "temp_bytes": []} for v in VARIANTS}
    with contextlib.ExitStack() as stack:
        os.makedirs(os.path.join(args.workdir, "mariadb"))
        server = stack.enter_context(mariadb(os.path.join(args.workdir, "mariadb")))
        os.makedirs(os.path.join(args.workdir, "beam"))
        beam = stack.enter_context(portable_beam(os.path.join(args.workdir, "beam")))
        server.sql(f"CREATE USER 'tfx'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; "
                   "GRANT ALL ON *.* TO 'tfx'@'127.0.0.1';")
        os.environ["MLMD_MYSQL_PASSWORD"] = PASSWORD
        for repeat in range(args.repeats):
            for variant in VARIANTS:
                name = f"{variant}_{repeat}"
                output = os.path.join(args.workdir, name)
                extra = []
                if variant.startswith("mysql"):
                    server.sql(f"CREATE DATABASE {name};")
                    extra += ["--metadata", server.uri("tfx", name)]
                if variant.endswith("portable"):
                    extra += [f"--beam-arg={a}" for a in beam.beam_args(workers=2)]
                temp = os.path.join(args.workdir, f"{name}_tmp")
                os.makedirs(temp)
                os.environ["TMPDIR"] = temp  # the run's (and only the run's) temp folder
                code, seconds, peak = run_pipeline(
                    quick_args(csv, output, *LEAN, *extra), output + ".log")
                del os.environ["TMPDIR"]
                if code != 0:
                    sys.exit(f"cluster_paths: {name} failed (exit {code}); see {output}.log")
                runs[variant]["seconds"].append(round(seconds, 1))
                runs[variant]["peak_rss_mb"].append(round(peak))
                runs[variant]["temp_bytes"].append(folder_bytes(temp))
                print(f"{name}: {seconds:.1f} s, peak {peak:.0f} MB, temp folder after: "
                      f"{runs[variant]['temp_bytes'][-1]} bytes", flush=True)
    medians = {v: median(r["seconds"]) for v, r in runs.items()}
    ratios = {v: round(s / medians["sqlite_direct"], 3) for v, s in medians.items()}
    for v in VARIANTS:
        print(f"{v:16s} median {medians[v]:6.1f} s  x{ratios[v]:.2f} of sqlite_direct")
    print_result({"runs": runs, "median_seconds": medians, "ratio_to_default": ratios,
                  "rows": args.rows, "repeats": args.repeats})


if __name__ == "__main__":
    main()
