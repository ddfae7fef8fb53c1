"""Secrets: URL masking, the scrubber, and log rendering without frame locals in every format."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from sidecar import secrets
from sidecar.logs import configure_logging, get_logger


@pytest.fixture(autouse=True)
def clean_redactor() -> Iterator[None]:
    secrets.REDACTOR.clear()
    yield
    secrets.REDACTOR.clear()
    structlog.reset_defaults()


@pytest.mark.parametrize(("url", "shown", "secret"), [
    ("postgresql+psycopg://u:p%40ss@127.0.0.1:5432/db", "postgresql+psycopg://u:***@127.0.0.1:5432/db", "p@ss"),
    ("mysql+pymysql://u:my@Secret!pw@127.0.0.1/db", "mysql+pymysql://u:***@127.0.0.1/db", "my@Secret!pw"),
    ("postgresql://u@127.0.0.1/db?sslmode=require&password=hunter22", "postgresql://u@127.0.0.1/db?sslmode=require&password=***",
     "hunter22"),
    ("http://admin:s3cret-pw@127.0.0.1:8083", "http://admin:***@127.0.0.1:8083", "s3cret-pw"),
    # A `?` in the password (and no `@` before it): SQLAlchemy reads the password up to the `@`.
    ("postgresql+psycopg://u:Zq8Qm?arkSecret@127.0.0.1:9/db", "postgresql+psycopg://u:***@127.0.0.1:9/db",
     "Zq8Qm?arkSecret"),
    ("mysql+pymysql://u:pa?ss#w@127.0.0.1:3306/db?charset=utf8", "mysql+pymysql://u:***@127.0.0.1:3306/db?charset=utf8",
     "pa?ss#w"),
])
def test_mask_url(url: str, shown: str, secret: str) -> None:
    """Passwords (escaped, with an unescaped @, as a query parameter) are masked whole."""
    assert secrets.mask_url(url) == shown
    assert secret in secrets.url_secrets(url)


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://u:Zq8Qm?arkSecret@127.0.0.1:9/db", "postgresql://u:pw/1234@127.0.0.1/db",
    "mysql+pymysql://u:pa?ss#w@127.0.0.1:3306/db?charset=utf8", "postgresql://127.0.0.1/db?x=a@b",
    "postgresql://u:pw1234@127.0.0.1/db?x=a@b", "postgresql://127.0.0.1:5432/db?x=a@b", "postgresql://127.0.0.1/db",
])
def test_the_password_masked_is_the_one_sqlalchemy_sends(url: str) -> None:
    from sqlalchemy.engine import make_url

    password = make_url(url).password
    assert secrets.split_userinfo(url)[2] == password
    if password:
        assert password in secrets.url_secrets(url) and password not in secrets.mask_url(url)


@pytest.mark.parametrize("url", [
    "mysql+pymysql://root:Zq8Qm?ark@Secret9x@127.0.0.1:3306/db",  # a `?`, then an unescaped `@`
    "mysql+pymysql://root:Zq8Qm@ark?Secret9x@127.0.0.1:3306/db",  # an `@`, then a `?`, then an `@`
    "mysql+pymysql://u:my@Secret!pw@[::1]:3306",
    "mysql+pymysql://root:Zq8@ark?w=Secret9x@127.0.0.1:3306/db",  # `@`, then `?k=`, then `@` and a port
    "postgresql://root:Zq8@ark?w=Secret9x@127.0.0.1/db",  # … and a path
])
def test_a_password_with_an_unescaped_at_and_a_question_mark_is_read_whole(url: str) -> None:
    """Read up to the last `@` when a host follows it: the whole password is masked, and the URL
    the engine gets connects to that host with that password (before, the piece after the first
    `@` was the host name, shown in the driver's errors and looked up in DNS)."""
    from sqlalchemy.engine import make_url

    from sidecar.databases import normalize_url

    password = url.partition("://")[2].rpartition("@")[0].partition(":")[2]
    assert secrets.split_userinfo(url)[2] == password
    assert password not in secrets.mask_url(url) and password.split("@")[-1] not in secrets.mask_url(url)
    sent = make_url(normalize_url(url))
    assert sent.password == password and sent.host in ("127.0.0.1", "::1")


@pytest.mark.parametrize(("url", "host", "query"), [
    ("mysql+pymysql://u:p@host?x=a@b.com", "host", {"x": "a@b.com"}),  # an `@` in the query, no database
    ("mysql://u:p@host/db?x=a@b", "host", {"x": "a@b"}),
    ("postgresql://u:p@host:5432?a@b", "host", {}),  # a query without `=` after host:port (review)
])
def test_an_at_in_the_query_stays_in_the_query(url: str, host: str, query: dict[str, str]) -> None:
    from sqlalchemy.engine import make_url

    from sidecar.databases import normalize_url

    sent = make_url(normalize_url(url))
    assert (sent.password, sent.host, dict(sent.query)) == ("p", host, query)


def test_scrub_plain_encoded_and_base64() -> None:
    """A registered secret is masked in plain, URL-encoded and base64 form; short values are ignored."""
    secrets.register("pa ss/w@rd")
    secrets.register("abc")  # too short to register: would mask unrelated text
    text = "x pa ss/w@rd y pa%20ss%2Fw%40rd z pa+ss%2Fw%40rd b cGEgc3Mvd0ByZA== abc"
    assert secrets.scrub(text) == "x *** y *** z *** b *** abc"


def _fail_with_local() -> None:
    conninfo = "host=127.0.0.1 password=local-only-Secret9"  # noqa: F841  # a frame local, as in psycopg
    raise ConnectionError("cannot connect")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_exception_logs_show_no_frame_locals(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Exception rendering in every log format leaves frame locals out (they hold connection strings)."""
    configure_logging("info", fmt)
    try:
        _fail_with_local()
    except ConnectionError:
        get_logger().exception("hook failed")
    err = capsys.readouterr().err
    assert "cannot connect" in err and "_fail_with_local" in err
    assert "local-only-Secret9" not in err


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_registered_secret_is_scrubbed_from_log_lines(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A registered secret in an event, a field, or an exception message becomes ***."""
    configure_logging("info", fmt)
    secrets.register("reg-Secret-1234")
    try:
        raise RuntimeError("url postgresql://u:reg-Secret-1234@h/db")
    except RuntimeError:
        get_logger().exception("failed reg-Secret-1234", dsn="u:reg-Secret-1234")
    logging.getLogger("third.party").warning("stdlib says reg-Secret-1234")

    class Conn:
        def __repr__(self) -> str:
            return "Conn(dsn='u:reg-Secret-1234@h')"

    get_logger().info("object field", conn=Conn())
    err = capsys.readouterr().err
    assert "reg-Secret-1234" not in err and err.count("***") >= 4
    assert "stdlib says ***" in err


def test_secret_named_environment_variables_are_scrubbed(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hook's token from the environment (AUDIT_API_TOKEN, DB_PASSWORD…) is masked once settings load."""
    from sidecar.config import load_settings

    monkeypatch.setenv("AUDIT_API_TOKEN", "tok-0123456789")
    monkeypatch.setenv("FEATURE_PASSWORD_CHECK", "true")  # short flags stay readable
    monkeypatch.setenv("SIDECAR_PIPELINE", "p")
    monkeypatch.setenv("SIDECAR_SOURCE__KIND", "file")
    monkeypatch.setenv("SIDECAR_SOURCE__FILE__PATH", "x.jsonl")
    load_settings(None)
    assert secrets.scrub("calling with tok-0123456789: true") == "calling with ***: true"
