"""The PostgreSQL the tests start (binwatch/servers.py): as whom it runs, and the clear error
that fails the registry's PostgreSQL tests, never skips them, when it is not installed."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from sqlalchemy import text

from binwatch import servers
from binwatch.servers import PostgresServer, free_port
from core.errors import ConfigError
from core.sql import make_engine


def test_a_missing_postgresql_is_an_error_that_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(servers, "POSTGRES_BIN_GLOB", str(tmp_path / "nothing" / "*" / "bin"))
    with pytest.raises(ConfigError, match=r"apt-get install -y postgresql"):
        PostgresServer(tmp_path, free_port()).start()


def test_the_server_runs_as_an_unprivileged_account_on_loopback(
    postgres_server: PostgresServer,
) -> None:
    assert postgres_server.process is not None
    status = Path(f"/proc/{postgres_server.process.pid}/status").read_text()
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    # PostgreSQL refuses root: run as root, the tests start it as Debian's `postgres` account.
    expected = pwd.getpwnam(servers.POSTGRES_ACCOUNT).pw_uid if os.geteuid() == 0 else os.geteuid()
    assert uid == expected != 0
    assert postgres_server.database_url().startswith("postgresql+psycopg://binwatch@127.0.0.1:")
    # Not UTC on purpose, so registry tests catch code that takes the server's zone for UTC.
    engine = make_engine(postgres_server.database_url())
    try:
        with engine.connect() as connection:
            assert connection.scalar(text("SHOW TimeZone")) == "Asia/Shanghai"
    finally:
        engine.dispose()
