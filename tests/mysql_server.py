"""A MariaDB server of the tests' own, as Kubeflow keeps ML Metadata in MySQL: Debian's
mariadb-server (`.ci/run` installs it), a temporary data folder and a free localhost port,
stopped and deleted afterwards."""
import contextlib
import dataclasses
import getpass
import os
import shutil
import subprocess
import time

from pipeline_runs import free_port

SERVER = shutil.which("mariadbd") or (os.path.exists("/usr/sbin/mariadbd") and "/usr/sbin/mariadbd")
MISSING = "mariadbd not found: install Debian's mariadb-server (.ci/run does)"


@dataclasses.dataclass(frozen=True)
class Server:
    port: int
    socket: str  # the administrator's way in (root by socket)

    def sql(self, statement: str) -> None:
        subprocess.run(["mariadb", f"--socket={self.socket}", "-uroot", "-e", statement],
                       check=True, capture_output=True, timeout=30)

    def uri(self, user: str, database: str, password: str = None) -> str:
        secret = f":{password}" if password is not None else ""
        return f"mysql://{user}{secret}@127.0.0.1:{self.port}/{database}"


@contextlib.contextmanager
def mariadb(directory: str):
    """Starts a server with its data in `directory` (deleted after) on a free port."""
    data, sock = os.path.join(directory, "data"), os.path.join(directory, "sock")
    user = getpass.getuser()
    subprocess.run(["mariadb-install-db", f"--user={user}", f"--datadir={data}",
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    with open(os.path.join(directory, "server.log"), "w") as log:
        server = subprocess.Popen(
            [SERVER, "--no-defaults", f"--user={user}", f"--datadir={data}", f"--socket={sock}",
             f"--port={port}", "--bind-address=127.0.0.1", "--skip-name-resolve"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while not os.path.exists(sock):
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError("mariadbd did not start: " +
                                   open(os.path.join(directory, "server.log")).read()[-2000:])
            time.sleep(0.2)
        yield Server(port, sock)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(data, ignore_errors=True)
