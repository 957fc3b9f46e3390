"""Beam's portable path for the tests: a job service (the Job API that Flink's, Spark's and
Dataflow's job servers speak) and a pool of SDK worker processes (`--environment_type=EXTERNAL`,
as a cluster's worker pods). `portable_beam(directory)` starts both; the pipeline reaches them
with `beam_args`.

The job service is Beam's own local one, except that its runner uses as many SDK workers per
job as the job's --direct_num_workers says, as a cluster spreads a job over its workers: the
stock one (`python -m apache_beam.runners.portability.local_job_service_main`) runs every job
on one worker whatever the options say.

    python tests/beam_job_service.py PORT
"""
import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import time
from typing import Tuple

from apache_beam.options.pipeline_options import DirectOptions
from apache_beam.portability.api import beam_job_api_pb2
from apache_beam.runners.portability import local_job_service
from apache_beam.runners.portability.fn_api_runner import fn_runner

from pipeline_runs import free_port


class ParallelJob(local_job_service.BeamJob):
    def _invoke_runner(self):
        self.set_state(beam_job_api_pb2.JobState.RUNNING)
        options = self.pipeline_options()
        runner = fn_runner.FnApiRunner(provision_info=self._provision_info)
        # FnApiRunner reads --direct_num_workers in run(), which a job service skips.
        runner._num_workers = int(options.view_as(DirectOptions).direct_num_workers or 1)
        print(f"ran job {self._job_id} on {runner._num_workers} workers", flush=True)
        return runner.run_via_runner_api(self._pipeline_proto, options)


@dataclasses.dataclass(frozen=True)
class PortableBeam:
    job_port: int
    worker_port: int
    log_dir: str

    def beam_args(self, workers: int = 2) -> Tuple[str, ...]:
        return ("--runner=PortableRunner", f"--job_endpoint=localhost:{self.job_port}",
                "--environment_type=EXTERNAL",
                f"--environment_config=localhost:{self.worker_port}",
                f"--direct_num_workers={workers}")

    def jobs(self):
        """[(job id, workers)] of the jobs run so far."""
        with open(os.path.join(self.log_dir, "job_service.log")) as log:
            return [(line.split()[2], int(line.split()[4]))
                    for line in log if line.startswith("ran job ")]


@contextlib.contextmanager
def portable_beam(log_dir: str):
    """The job service and the worker pool on free localhost ports, stopped afterwards. The
    pool starts its workers with `python` from PATH: this interpreter's folder comes first."""
    ports = free_port(), free_port()
    temp = os.path.join(log_dir, "tmp")  # the job service stages every job's files there
    os.makedirs(temp, exist_ok=True)
    env = {**os.environ, "TMPDIR": temp,
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
    commands = {"job_service": [sys.executable, os.path.abspath(__file__), str(ports[0])],
                "worker_pool": [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                                f"--service_port={ports[1]}"]}
    processes = []
    try:
        for name, command in commands.items():
            with open(os.path.join(log_dir, f"{name}.log"), "w") as log:
                processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                  env=env))
        deadline = time.time() + 120
        for port, process in zip(ports, processes):
            while True:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if process.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"{process.args} did not start; see {log_dir}")
                time.sleep(0.5)
        yield PortableBeam(*ports, log_dir)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def main(port: int) -> None:
    servicer = local_job_service.LocalJobServicer(beam_job_type=ParallelJob)
    print(f"job service on port {servicer.start_grpc_server(port)}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(int(sys.argv[1]))
