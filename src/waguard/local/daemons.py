"""PostgreSQL, Redis and HAProxy for the scaled profile: Debian's packages, run from the stack's home.

Each is a foreground child of the stack (stopped with it), on loopback, with a config generated
here. PostgreSQL refuses to run as root, so as root it runs as Debian's `postgres` user
(`runuser -u postgres --`); its data directory is then owned by that user and every parent of it
must be traversable by it. Passwords are generated at the first start and kept in a libpq
passfile (mode 0600) in the home: the only place they are written.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from waguard.errors import WaguardError
from waguard.local.processes import ChildProcess

ROLES = ("prefect", "waguard")  # Prefect's database, and waguard's shared state (intake claims, ledger)


class DaemonError(WaguardError):
    """A system service of the scaled profile is missing or could not be set up."""


def postgres_bin(name: str) -> str:
    """Debian keeps initdb/pg_ctl/postgres under /usr/lib/postgresql/<version>/bin, off PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    path = found[-1] if found else shutil.which(name)
    if path is None:
        raise DaemonError(f"{name} not found: install Debian's postgresql (scripts/sysdeps.sh)")
    return path


def system_bin(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        raise DaemonError(f"{name} not found: install Debian's {package} (scripts/sysdeps.sh)")
    return path


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def tcp_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass(frozen=True)
class PostgresPlan:
    """A PostgreSQL cluster under <home>/postgres, TCP on host:port only, password logins (scram)."""

    home: Path
    host: str
    port: int

    @property
    def data(self) -> Path:
        return self.home / "postgres" / "data"

    @property
    def passfile(self) -> Path:
        return self.home / "pgpass"

    def password(self, role: str) -> str:
        for line in self.passfile.read_text().splitlines():
            *_, user, password = line.split(":", 4)
            if user == role:
                return password
        raise DaemonError(f"no password for {role} in {self.passfile}")

    def dsn(self, role: str, driver: str = "postgresql") -> str:
        """Prefect's form carries the password (SQLAlchemy reads no passfile); libpq's form names the file."""
        if driver == "postgresql+asyncpg":
            return f"{driver}://{role}:{self.password(role)}@{self.host}:{self.port}/{role}"
        return f"postgresql://{role}@{self.host}:{self.port}/{role}?passfile={self.passfile}"

    def initialise(self) -> None:
        """initdb once (the data directory persists across starts), with generated passwords."""
        if (self.data / "PG_VERSION").exists():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        self.data.chmod(0o700)
        passwords = {role: secrets.token_urlsafe(24) for role in ("postgres", *ROLES)}
        fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:  # libpq's format; any port: the stack picks a free one each start
            f.writelines(f"{self.host}:*:*:{role}:{pw}\n" for role, pw in passwords.items())
        superuser_pw = self.home / "postgres" / "initdb-password"
        fd = os.open(superuser_pw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # read by initdb, then gone
        with os.fdopen(fd, "w") as f:
            f.write(passwords["postgres"] + "\n")
        if os.geteuid() == 0:
            import pwd

            user = pwd.getpwnam("postgres")
            for path in (self.data, superuser_pw):
                os.chown(path, user.pw_uid, user.pw_gid)
            probe = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-w", str(self.data)])
            if probe.returncode != 0:
                raise DaemonError(f"user postgres cannot reach {self.data}: make its parent directories "
                                  "traversable (chmod o+x) or choose another stack home")
        try:
            subprocess.run(_as_postgres([postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                                         "--auth-host=scram-sha-256", "--auth-local=peer",
                                         f"--pwfile={superuser_pw}", "-E", "UTF8", "--no-instructions"]),
                           check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as err:
            raise DaemonError(f"initdb failed: {err.stderr.strip()[-400:]}") from None
        finally:
            superuser_pw.unlink(missing_ok=True)

    def process(self) -> ChildProcess:
        argv = [postgres_bin("postgres"), "-D", str(self.data), "-p", str(self.port), "-h", self.host,
                "-c", "unix_socket_directories=", "-c", "max_connections=200", "-c", "fsync=off"]
        return ChildProcess(name="PostgreSQL", argv=_as_postgres(argv), health_url="",
                            log_path=self.home / "logs" / "postgresql.log", ready_timeout_s=60,
                            probe=lambda: tcp_open(self.host, self.port), stop_signal=signal.SIGINT)

    async def create_databases(self) -> None:
        """One role and one database of the same name per ROLES entry, if missing."""
        import asyncpg  # type: ignore[import-untyped]  # ships no type information

        conn = await asyncpg.connect(host=self.host, port=self.port, user="postgres", database="postgres",
                                     password=self.password("postgres"))
        try:
            for role in ROLES:
                if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
                    password = self.password(role).replace("'", "''")
                    await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
                if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", role):
                    await conn.execute(f"CREATE DATABASE {role} OWNER {role}")
        finally:
            await conn.close()


@dataclass(frozen=True)
class RedisPlan:
    """redis-server on host:port with a generated config: password, append-only file (leases survive)."""

    home: Path
    host: str
    port: int

    @property
    def password_file(self) -> Path:
        return self.home / "redis" / "password"

    def url(self, db: int) -> str:
        return f"redis://:{self.password_file.read_text().strip()}@{self.host}:{self.port}/{db}"

    def process(self) -> ChildProcess:
        state = self.home / "redis"
        state.mkdir(parents=True, exist_ok=True)
        if not self.password_file.exists():
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24))
        config = state / "redis.conf"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"bind {self.host}\nport {self.port}\nprotected-mode yes\ndaemonize no\n"
                    f"dir {state}\nappendonly yes\nsave \"\"\n"
                    f"requirepass {self.password_file.read_text().strip()}\n")
        return ChildProcess(name="Redis", argv=[system_bin("redis-server", "redis-server"), str(config)],
                            health_url="", log_path=self.home / "logs" / "redis.log", ready_timeout_s=30,
                            probe=lambda: self._pings())

    def _pings(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as s:
                password = self.password_file.read_text().strip()
                s.sendall(f"AUTH {password}\r\nPING\r\n".encode())
                answer = b""
                while b"+PONG" not in answer and b"-" not in answer:
                    chunk = s.recv(64)
                    if not chunk:
                        break
                    answer += chunk
                return b"+PONG" in answer
        except OSError:
            return False
