"""Checks before the embedded engine starts, so common setup mistakes get a precise fix."""

from __future__ import annotations

from typing import Any

from sidecar.errors import ConfigError, SourceError


def check_postgres(props: dict[str, str], timeout_s: float = 10.0) -> None:
    """wal_level must be logical and the connector's user must have REPLICATION (or be superuser)."""
    import psycopg

    host = props.get("database.hostname", "127.0.0.1")
    port = props.get("database.port", "5432")
    user = props.get("database.user", "")
    if not (port.isascii() and port.isdecimal()) or not 0 < int(port) < 65536:
        raise ConfigError(f"connector property database.port must be a port number (1-65535), not {port[:40]!r} "
                          "(in Kubernetes, a service named like the variable that fills it sets it to tcp://…)")
    where = f"PostgreSQL at {host}:{port} as {user!r}"
    try:
        conn: Any = psycopg.connect(
            host=host, port=int(port), user=user, password=props.get("database.password", ""),
            dbname=props.get("database.dbname", ""), connect_timeout=int(timeout_s),
        )
    except psycopg.OperationalError as exc:
        raise SourceError(f"cannot connect to {where}: {str(exc).strip()}") from None
    with conn:
        wal_level = conn.execute("SHOW wal_level").fetchone()[0]
        if wal_level != "logical":
            raise SourceError(
                f"{where}: wal_level is {wal_level!r}, change data capture needs 'logical' — fix: set "
                "wal_level = logical in postgresql.conf (ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL"
            )
        rep, sup = conn.execute(
            "SELECT rolreplication, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        if not (rep or sup):
            raise SourceError(
                f"{where}: the user has no REPLICATION privilege, which logical decoding needs — fix: "
                f"ALTER ROLE {user} WITH REPLICATION (as a superuser), or use a user that has it"
            )


def preflight(props: dict[str, str]) -> None:
    if props.get("connector.class") == "io.debezium.connector.postgresql.PostgresConnector":
        check_postgres(props)
