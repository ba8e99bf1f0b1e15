"""A real nginx of the test's own in front of twistd instances, proxying with the upstream and
server blocks of contrib/nginx.conf, so the tests run what users deploy."""

import contextlib
import grp
import os
import pwd
import re
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from support.http import free_port
from support.programs import required_program
from support.waiting import wait_until

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "nginx.conf"
INSTALL = "apt-get install nginx (Debian's nginx)"
START_WAIT = 15
STOP_WAIT = 15
# What the test's own access log says of each request: when it was answered (Unix seconds) and
# how long it took, what, and which instances nginx tried ("addr1, addr2" when it passed the
# request on).
LOG_FORMAT = ("$msec $request_time $status $request_method \"$request_uri\" \"$upstream_addr\" "
              "\"$upstream_status\"")
LOG_LINE = re.compile(r'^(\S+) (\S+) (\d+) (\S+) "([^"]*)" "([^"]*)" "([^"]*)"$')
# The server block's lines about TLS and the public name, which the test's plain HTTP listener
# on 127.0.0.1 replaces.
PUBLIC_ONLY = re.compile(r"^[ \t]*(listen|server_name|ssl_\w+|http2)\s[^;]*;\n", re.MULTILINE)


def nginx_binary() -> str:
    """Debian's nginx: see support.programs."""
    return required_program("nginx", INSTALL)


def block(text: str, opening: str) -> str:
    """The block of `text` that starts with the line `opening {`, braces and all."""
    match = re.search(r"^[ \t]*" + re.escape(opening) + r"\s*\{", text, re.MULTILINE)
    assert match, f"{CONTRIB.name} has no '{opening} {{' block"
    depth = 0
    for index in range(match.end() - 1, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[match.start():index + 1]
    raise AssertionError(f"{CONTRIB.name}: the '{opening}' block is not closed")


def without_comments(text: str) -> str:
    """`text` without its comments and the lines they leave empty."""
    lines = (re.sub(r"#.*", "", line).rstrip() for line in text.splitlines())
    return "\n".join(line for line in lines if line) + "\n"


def contrib_blocks(instances: list[str], listen_port: int, contrib: Path = CONTRIB) -> str:
    """contrib/nginx.conf's upstream and server blocks, with `instances` (host:port) as the
    upstream's servers (each keeping the parameters of the first server line there) and a plain
    listener on 127.0.0.1:`listen_port` instead of TLS and the public name."""
    text = without_comments(contrib.read_text())
    upstream = block(text, "upstream attolytics")
    servers = re.findall(r"^\s*server\s+(\S+)([^;]*);", upstream, re.MULTILINE)
    assert len(servers) >= 2, f"{contrib.name}: the upstream should list several instances"
    parameters = servers[0][1]
    ours = "".join(f"    server {address}{parameters};\n" for address in instances)
    upstream = re.sub(r"^[ \t]*server\s[^;]*;\n", "", upstream, flags=re.MULTILINE)
    upstream = upstream.replace("{\n", "{\n" + ours, 1)
    server = PUBLIC_ONLY.sub("", block(text, "server"))
    server = server.replace("{\n", f"{{\n    listen 127.0.0.1:{listen_port};\n", 1)
    return upstream + "\n\n" + server + "\n"


def full_config(directory: Path, blocks: str) -> str:
    """A whole nginx.conf around `blocks`: in the foreground, every file in `directory`."""
    # As root nginx would run its workers as nobody, who cannot enter pytest's private
    # (0700) temporary folders; they run as the test's own user instead.
    user = ""
    if os.geteuid() == 0:
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"
    temp = "\n".join(f'    {kind}_temp_path "{directory / kind}";'
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""daemon off;
master_process on;
# Two workers: what one learns of a failed instance reaches the other only through the zone.
worker_processes 2;
{user}
pid "{directory / 'nginx.pid'}";
error_log "{directory / 'error.log'}" info;
events {{
    worker_connections 1024;
}}
http {{
    log_format upstreams '{LOG_FORMAT}';
    access_log "{directory / 'access.log'}" upstreams;
{temp}

{blocks}}}
"""


@dataclass
class Logged:
    """One line of the access log."""

    at: float
    began: float
    status: int
    method: str
    uri: str
    upstreams: list[str]
    upstream_statuses: list[str]


class Nginx:
    """nginx run in the foreground on a configuration of its own in `directory`."""

    def __init__(self, directory: Path, instances: list[str]):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config_path = self.directory / "nginx.conf"
        self.config_path.write_text(full_config(self.directory, contrib_blocks(instances, self.port)))
        self.out_path = self.directory / "nginx.out"
        self.process = None

    def start(self) -> None:
        """Start nginx and wait until it accepts connections."""
        command = [nginx_binary(), "-p", f"{self.directory}/", "-c", str(self.config_path),
                   "-e", str(self.directory / "error.log")]
        with open(self.out_path, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        wait_until(self._accepting, START_WAIT, "nginx accepting connections")

    def _accepting(self) -> bool:
        assert self.process.poll() is None, f"nginx exited with {self.process.returncode}:\n{self.output}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True
        return False

    def stop(self) -> None:
        """A graceful stop (SIGQUIT: requests under way finish); killed if it takes too long."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    @property
    def output(self) -> str:
        """What nginx wrote to its error log and to standard output and error."""
        parts = [p.read_text(errors="replace") for p in (self.directory / "error.log", self.out_path)
                 if p.exists()]
        return "\n".join(parts)

    def logged(self) -> list[Logged]:
        """The access log so far, line by line."""
        path = self.directory / "access.log"
        lines = path.read_text().splitlines() if path.exists() else []
        result = []
        for line in lines:
            match = LOG_LINE.match(line)
            assert match, f"an access log line of another form: {line!r}"
            at, took, status, method, uri, upstreams, statuses = match.groups()
            result.append(Logged(float(at), float(at) - float(took), int(status), method, uri,
                                 _listed(upstreams), _listed(statuses)))
        return result


def _listed(value: str) -> list[str]:
    """nginx's "a, b : c" list of upstream values (":" where it went to another upstream group)."""
    return [] if value in ("", "-") else re.split(r",\s*|\s+:\s+", value)


@contextlib.contextmanager
def nginx_in_front(directory: Path, ports: list[int]):
    """nginx proxying to the instances on 127.0.0.1 `ports`, stopped on leaving."""
    nginx = Nginx(directory, [f"127.0.0.1:{port}" for port in ports])
    try:
        nginx.start()
        yield nginx
    finally:
        nginx.stop()
