"""A stand-in for ``systemctl`` and ``sudo -u`` where there is no systemd: it runs a unit's ``ExecStart`` the
way systemd would, for the README's deploy steps followed in a test (tests/media/test_readme_deploy.py).

    python -m tests.support.service_manager systemctl daemon-reload | enable [--now] UNIT | start UNIT
        | stop UNIT | reload UNIT | try-reload-or-restart UNIT | disable [--now] UNIT | is-active UNIT
    python -m tests.support.service_manager sudo -u USER COMMAND [ARGS...]

Units are read from ``/etc/systemd/system`` (the test mounts its own over the machine's). What the service
gets, as from systemd: the user and group (``User=``, ``Group=``, with the user's supplementary groups), a
clean environment (``PATH``, ``HOME``, ``USER``, ``LOGNAME``, ``SHELL``, then ``Environment=`` and the
``EnvironmentFile=``'s ``KEY=VALUE`` lines), ``WorkingDirectory=``, ``UMask=``, ``LimitNOFILE=``, the
capabilities (``AmbientCapabilities=``, ``CapabilityBoundingSet=``), ``NoNewPrivileges=``; its output goes
to a file standing for the journal; ``ExecReload=`` runs with ``$MAINPID``; stop is ``KillMode=mixed``
(SIGTERM to the main process, SIGKILL to what is left after ``TimeoutStopSec=``). The sandboxing directives
(``ProtectSystem=`` and the like) are read but not applied: ``systemd-analyze verify`` checks them
(tests/deploy/test_service_unit.py). Any other directive is refused, so a unit that grows one cannot pass
untested. ``PYTHONPATH`` is passed through to the service and to ``sudo``'s command (the tests run the
source under test, not an installed copy); nothing else of the caller's environment is.

State (the main PID, the journal, the exit status) lives in ``$EMBER_TEST_SERVICE_STATE``.
"""

from __future__ import annotations

import grp
import os
import pwd
import resource
import shlex
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from emberrtc.deploy.doctor import read_env_file

UNIT_DIR = Path("/etc/systemd/system")
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: [Service] directives applied as systemd applies them.
APPLIED = {
    "Type",
    "User",
    "Group",
    "EnvironmentFile",
    "Environment",
    "ExecStart",
    "ExecReload",
    "Restart",
    "RestartSec",
    "KillMode",
    "TimeoutStopSec",
    "WorkingDirectory",
    "UMask",
    "LimitNOFILE",
    "StandardOutput",
    "StandardError",
    "SyslogIdentifier",
    "AmbientCapabilities",
    "CapabilityBoundingSet",
    "NoNewPrivileges",
}
#: Sandboxing directives: read, not applied (systemd-analyze verify checks their syntax).
NOT_APPLIED = {
    "ProtectSystem",
    "ReadWritePaths",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectControlGroups",
    "RestrictSUIDSGID",
    "RestrictAddressFamilies",
}


@dataclass
class Unit:
    name: str
    service: dict[str, list[str]] = field(default_factory=dict)

    def one(self, key: str, default: str = "") -> str:
        values = self.service.get(key, [])
        return values[-1] if values else default


def load_unit(name: str) -> Unit:
    """``/etc/systemd/system/NAME.service``, its ``[Service]`` section; unknown directives refused."""
    path = UNIT_DIR / (name if name.endswith(".service") else f"{name}.service")
    unit = Unit(path.stem)
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        if section != "Service":
            continue
        if key not in APPLIED | NOT_APPLIED:
            raise SystemExit(
                f"service_manager: {path}: {key}= is not known here; teach tests/support/service_manager.py"
            )
        unit.service.setdefault(key, []).append(value)
    if unit.one("Type", "simple") not in ("simple", "exec"):
        raise SystemExit(f"service_manager: Type={unit.one('Type')} is not supported")
    if unit.one("KillMode", "control-group") != "mixed":
        raise SystemExit("service_manager: only KillMode=mixed is supported")
    return unit


def state_dir() -> Path:
    folder = Path(os.environ["EMBER_TEST_SERVICE_STATE"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _pid(name: str) -> int | None:
    path = state_dir() / f"{name}.pid"
    if not path.exists():
        return None
    pid = int(path.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    # A zombie (exited, not yet reaped by the watcher) is not running.
    status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return None if status == "Z" else pid


def _caps(value: str) -> str:
    names = [c.lower().removeprefix("cap_") for c in value.split()]
    return ",".join(["-all", *(f"+{n}" for n in names)])


def _account_environment(account: pwd.struct_passwd) -> dict[str, str]:
    """What a login of ``account`` starts with (and the test run's PYTHONPATH, to find the checkout)."""
    env = {
        "PATH": SERVICE_PATH,
        "HOME": account.pw_dir,
        "USER": account.pw_name,
        "LOGNAME": account.pw_name,
        "SHELL": account.pw_shell,
    }
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def _environment(unit: Unit, account: pwd.struct_passwd) -> dict[str, str]:
    env = _account_environment(account)
    for assignment in unit.service.get("Environment", []):
        for word in shlex.split(assignment):
            key, _, value = word.partition("=")
            env[key] = value
    for entry in unit.service.get("EnvironmentFile", []):
        optional = entry.startswith("-")
        path = Path(entry.removeprefix("-"))
        if not path.exists():
            if optional:
                continue
            raise SystemExit(f"service_manager: EnvironmentFile {path} is missing")
        env.update(read_env_file(path))
    return env


def start(name: str) -> None:
    unit = load_unit(name)
    if _pid(unit.name) is not None:
        return
    account = pwd.getpwnam(unit.one("User", "root"))
    group = grp.getgrnam(unit.one("Group", account.pw_name))
    env = _environment(unit, account)
    command = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={group.gr_gid}", "--init-groups"]
    if unit.one("AmbientCapabilities"):
        caps = _caps(unit.one("AmbientCapabilities"))
        command += [f"--inh-caps={caps}", f"--ambient-caps={caps}"]
    if unit.one("CapabilityBoundingSet"):
        command.append(f"--bounding-set={_caps(unit.one('CapabilityBoundingSet'))}")
    if unit.one("NoNewPrivileges") == "yes":
        command.append("--no-new-privs")
    command += ["--", *shlex.split(unit.one("ExecStart"))]
    umask = int(unit.one("UMask", "0022"), 8)
    nofile = int(unit.one("LimitNOFILE", "0") or 0)

    def child_setup() -> None:
        os.umask(umask)
        if nofile:
            # systemd may raise the hard limit; this test machine may cap it lower (a container): up to that.
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            limit = nofile if hard == resource.RLIM_INFINITY else min(nofile, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    journal = (state_dir() / f"{unit.name}.journal").open("ab")
    # A watcher outlives this command (as systemd does): it reaps the service and records its exit status.
    watcher = os.fork()
    if watcher:
        deadline = time.monotonic() + 10
        while _pid(unit.name) is None:
            if (state_dir() / f"{unit.name}.status").exists() or time.monotonic() > deadline:
                raise SystemExit(f"service_manager: {unit.name} did not start")
            time.sleep(0.05)
        return
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # the caller's terminal (a pipe) is not held open by the watcher
            os.dup2(devnull, fd)
        proc = subprocess.Popen(
            command,
            env=env,
            cwd=unit.one("WorkingDirectory", "/"),
            stdin=subprocess.DEVNULL,
            stdout=journal,
            stderr=subprocess.STDOUT,
            preexec_fn=child_setup,
            start_new_session=True,
        )
        (state_dir() / f"{unit.name}.status").unlink(missing_ok=True)
        (state_dir() / f"{unit.name}.pid").write_text(str(proc.pid))
        status = proc.wait()
    except BaseException:
        journal.write(f"service_manager: cannot start {command}:\n{traceback.format_exc()}".encode())
        status = 255
    journal.close()
    (state_dir() / f"{unit.name}.status").write_text(str(status))
    os._exit(0)


def stop(name: str) -> None:
    unit = load_unit(name)
    pid = _pid(unit.name)
    if pid is None:
        return
    # systemd's cgroup: every process the service started, even one in a session of its own.
    group = _descendants(pid)
    os.kill(pid, signal.SIGTERM)  # KillMode=mixed: the main process first
    timeout = float(unit.one("TimeoutStopSec", "90"))
    deadline = time.monotonic() + timeout
    status_file = state_dir() / f"{unit.name}.status"
    while not status_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    # ...then whatever is left of it (systemd: of its cgroup).
    for child in group | _descendants(pid):
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    while not status_file.exists():
        time.sleep(0.05)


def _descendants(pid: int) -> set[int]:
    """The processes below ``pid`` (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def reload(name: str) -> None:
    unit = load_unit(name)
    pid = _pid(unit.name)
    if pid is None:
        raise SystemExit(f"Job for {unit.name}.service failed: the unit is not active")
    command = shlex.split(unit.one("ExecReload").replace("$MAINPID", str(pid)))
    subprocess.run(command, check=True)


def systemctl(args: list[str]) -> None:
    now = "--now" in args
    words = [a for a in args if a != "--now"]
    verb, names = words[0], words[1:]
    if verb == "daemon-reload":
        return  # units are read at each start
    for name in names:
        known = (UNIT_DIR / (name if name.endswith(".service") else f"{name}.service")).exists()
        if verb in ("disable", "stop") and not known:
            # A unit of the machine's own (Debian's coturn): never started in this namespace, so stopped.
            print(f"{name}: not running here", file=sys.stderr)
            continue
        if verb == "enable":
            if now:
                start(name)
        elif verb == "disable":
            if now:
                stop(name)
        elif verb == "start":
            start(name)
        elif verb == "stop":
            stop(name)
        elif verb == "reload":
            reload(name)
        elif verb == "try-reload-or-restart":
            if _pid(load_unit(name).name) is not None:
                reload(name)
        elif verb == "is-active":
            active = _pid(load_unit(name).name) is not None
            print("active" if active else "inactive")
            if not active:
                raise SystemExit(3)
        else:
            raise SystemExit(f"service_manager: systemctl {verb} is not supported")


def sudo(args: list[str]) -> None:
    if len(args) < 3 or args[0] != "-u":
        raise SystemExit("service_manager: only sudo -u USER COMMAND...")
    account = pwd.getpwnam(args[1])
    env = _account_environment(account)
    command = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups", "--", *args[2:]]
    os.execvpe("setpriv", command, env)


def main() -> None:
    tool, args = sys.argv[1], sys.argv[2:]
    if tool == "systemctl":
        systemctl(args)
    elif tool == "sudo":
        sudo(args)
    else:
        raise SystemExit(f"service_manager: unknown tool {tool}")


if __name__ == "__main__":
    main()
