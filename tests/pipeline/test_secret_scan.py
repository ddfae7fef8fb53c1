"""No secret from the config, the environment or a secret file appears in anything the sidecar writes.

Runs every CLI command (and every --help) as a subprocess with secrets in database URLs
(escaped, with an unescaped `@`, as a `?password=` query parameter, from a `file:` secret and
from an env override), in SASL settings, in a connector file and in a Kafka Connect URL; hooks
fail connecting to databases whose URLs hold the passwords (and keep them in local variables,
and put a URL in their exception message). Then it searches every output — stdout/stderr
(the logs, JSON and console), the file dead-letter store, the replay ledger, what the Kafka
dead-letter writer would produce, `/metrics` — for each secret in plain, URL-encoded and
base64 form. Only loopback addresses, all of them closed ports or servers this test runs.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import click
import pytest
import yaml

from sidecar.cli import main as cli_main
from tests.fixtures import load

PG_PW = "pg-S3cret@pw/x+y"          # written URL-encoded
MY_PW = "my@Secret!pw"              # written with its '@' unescaped
QUERY_PW = "qparamSecret99"         # ?password= query parameter
FILE_PW = "file-Secret-55"          # inside a file: secret (a whole URL)
ENV_PW = "env-Secret?66"            # only in an env override (a `?` in it, before its `@`)
SASL_PW = "sasl-Secret-77"          # source.kafka.settings sasl.password
SASL_FILE_PW = "saslfile-Secret-88"  # sasl.password from a file: secret (embedded config's Kafka block)
CONNECT_PW = "connect-Secret-33"    # --connect-url user info
CONNECTOR_PW = "embed-Secret-44"    # connector file database.password (${ENV})
PROPERTY_PW = "prop-Secret-22"      # source.embedded.properties database.password override
SECRETS = [PG_PW, MY_PW, QUERY_PW, FILE_PW, ENV_PW, SASL_PW, SASL_FILE_PW, CONNECT_PW, CONNECTOR_PW, PROPERTY_PW]


def forms(secret: str) -> set[str]:
    """The secret as written, URL-encoded, base64 — and its pieces around '@' and '/' (half-masking)."""
    raw = secret.encode()
    pieces = {p for p in secret.replace("/", "@").split("@") if len(p) >= 6 and p != secret}
    return pieces | {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
            base64.b64encode(raw).decode(), base64.b64encode(raw).decode().rstrip("="),
            base64.urlsafe_b64encode(raw).decode()}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


HOOK_DB = """
from sqlalchemy import text

def checkpoint(param):
    for name in ("pgenc", "myat", "query", "fromfile"):
        engine = param.auxiliary_db[name]
        url_with_password = engine.url.render_as_string(hide_password=False)  # a local holding it
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            param.logger.exception("cannot reach database", database=name)
    engine = param.source_db
    url_with_password = engine.url.render_as_string(hide_password=False)
    with engine.connect() as conn:  # fails: the failure is logged, retried, dead-lettered
        conn.execute(text("SELECT 1"))
"""

HOOK_MESSAGE = """
def checkpoint(param):
    url = param.auxiliary_db["myat"].url.render_as_string(hide_password=False)
    raise RuntimeError(f"could not write audit row to {url} ({param.auxiliary_db['fromfile'].url!r})")
"""

HOOK_FLAKY = """
import os

def checkpoint(param):
    if not os.path.exists(os.environ["FLAKY_MARKER"]):
        raise ConnectionError("audit db down, password=" + os.environ["FLAKY_SECRET"])
"""

POPULATE = """
import sys, threading
from pathlib import Path
from sidecar.app import build_app, build_dead_letters, build_dispatcher
from sidecar.checkpoint import Checkpoint
from sidecar.config import load_settings
from sidecar.decode import Decoder
from sidecar.logs import configure_logging
from sidecar.loop import run_loop
from sidecar.sources.file import FileSource

settings = load_settings(sys.argv[1])
configure_logging(settings.log.level, settings.log.format)
app = build_app(settings, Path(sys.argv[1]).parent)
dead_letters = build_dead_letters(settings)
source = FileSource(sys.argv[2])
checkpoint = Checkpoint(source, 0.0, 1)
dispatcher = build_dispatcher(app, checkpoint, dead_letters)
run_loop(source, Decoder(), dispatcher, checkpoint, threading.Event(), until_exhausted=True)
dispatcher.close()
dead_letters.close()
print(app.metrics.registry and __import__("prometheus_client").generate_latest(app.metrics.registry).decode())
"""


class FakeConnect(BaseHTTPRequestHandler):
    """Kafka Connect REST on loopback: needs basic auth; its failure trace echoes the DB password."""

    auth_seen: ClassVar[list[str]] = []

    def _reply(self, code: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        FakeConnect.auth_seen.append(header)
        expected = "Basic " + base64.b64encode(f"admin:{CONNECT_PW}".encode()).decode()
        if header != expected:
            self._reply(401, {"error_code": 401, "message": "Unauthorized"})
            return False
        return True

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self._authorized():
            self._reply(200, {})

    def do_GET(self) -> None:
        if self._authorized():
            trace = f"org.postgresql.util.PSQLException: FATAL: password {CONNECTOR_PW} refused for user u"
            self._reply(200, {"name": "pg", "connector": {"state": "FAILED", "trace": trace}, "tasks": []})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def connect_server() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), FakeConnect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def all_commands() -> list[list[str]]:
    """Every command path of the CLI (for --help)."""
    out: list[list[str]] = [[]]

    def walk(group: click.Group, prefix: list[str]) -> None:
        for name, cmd in group.commands.items():
            out.append([*prefix, name])
            if isinstance(cmd, click.Group):
                walk(cmd, [*prefix, name])

    walk(cli_main, [])
    return out


def test_no_secret_in_any_output(tmp_path: Path, connect_server: int) -> None:
    """Every command's stdout/stderr, the dead-letter stores, the ledger and /metrics hold no secret."""
    port = closed_port()
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "dbfail.py").write_text(HOOK_DB)
    (tmp_path / "hooks" / "message.py").write_text(HOOK_MESSAGE)
    (tmp_path / "hooks" / "flaky.py").write_text(HOOK_FLAKY)
    (tmp_path / "db-url").write_text(f"postgresql+psycopg://filer:{FILE_PW}@127.0.0.1:{port}/db\n")
    (tmp_path / "sasl-pw").write_text(SASL_FILE_PW + "\n")
    connector = tmp_path / "pg.json"
    connector.write_text(json.dumps({"name": "pg", "config": {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "database.hostname": "127.0.0.1", "database.port": str(port), "database.user": "u",
        "database.password": "${CONNECTOR_PW}", "database.dbname": "shop", "topic.prefix": "shop"}}))
    messages = tmp_path / "orders.jsonl"
    values = [m["value"] for m in load("postgres-schemas")["messages"]
              if m["value"] and m["topic"] == "fxpo.public.events_default_identity"][:2]
    messages.write_text("\n".join(values[:2]) + "\n")
    store = tmp_path / "dl.jsonl"
    marker = tmp_path / "fixed"
    http_port = closed_port()

    databases = {
        "source": f"postgresql+psycopg://u:placeholder@127.0.0.1:{port}/db",  # the env override wins
        "auxiliary": {
            "pgenc": f"postgresql+psycopg://u:{urllib.parse.quote(PG_PW, safe='')}@127.0.0.1:{port}/db",
            "myat": f"mysql+pymysql://u:{MY_PW}@127.0.0.1:{port}/db",
            "query": f"postgresql+psycopg://u@127.0.0.1:{port}/db?password={QUERY_PW}&connect_timeout=2",
            "fromfile": f"file:{tmp_path / 'db-url'}",
        },
    }
    retry = {"max_attempts": 2, "initial_backoff_s": 0.01}
    hooks = {"dbfail": {"path": "hooks/dbfail.py", "retry": retry},
             "message": {"path": "hooks/message.py", "retry": retry},
             "flaky": {"path": "hooks/flaky.py", "retry": retry}}
    kafka = {"bootstrap_servers": f"127.0.0.1:{port}", "topics": ["shop.public.orders"],
             "settings": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                          "sasl.username": "sidecar", "sasl.password": SASL_PW,
                          "session.timeout.ms": 6000}}
    base = {"pipeline": "p", "databases": databases, "hooks": hooks, "log": {"format": "json"},
            "dead_letters": {"kind": "file", "path": str(store)}}

    def config(name: str, **over: Any) -> str:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**base, **over}))
        return str(path)

    file_cfg = config("file", source={"kind": "file", "file": {"path": str(messages)}})
    kafka_cfg = config("kafka", source={"kind": "kafka", "kafka": kafka},
                       http={"host": "127.0.0.1", "port": http_port})
    embedded_kafka = {**kafka, "settings": {**kafka["settings"], "sasl.password": f"file:{tmp_path / 'sasl-pw'}"}}
    embedded_cfg = config("embedded", source={"kind": "embedded", "kafka": embedded_kafka,
                                              "embedded": {"connector": str(connector),
                                                           "properties": {"database.password": PROPERTY_PW},
                                                           "state_dir": str(tmp_path / "state")}},
                          http={"host": "127.0.0.1", "port": 0})
    broken_yaml = tmp_path / "broken.yaml"
    broken_yaml.write_text(f"pipeline: p\ndatabases:\n  destination: \"postgresql://u:{PG_PW}@127.0.0.1/db\n  x: [\n")
    check_cfgs = [config(f"check-{name}", source={"kind": "file", "file": {"path": str(messages)}},
                         databases={"auxiliary": {name: url}}, hooks={})
                  for name, url in databases["auxiliary"].items()]  # type: ignore[union-attr]

    env = {**os.environ, "SIDECAR_DATABASES__SOURCE": f"postgresql+psycopg://envuser:{ENV_PW}@127.0.0.1:{port}/db",
           "CONNECTOR_PW": CONNECTOR_PW, "FLAKY_MARKER": str(marker), "FLAKY_SECRET": FILE_PW,
           "PYTHONUNBUFFERED": "1"}
    env.pop("SIDECAR_CONFIG", None)
    exe = [sys.executable, "-m", "sidecar"]
    outputs: dict[str, str] = {}

    def run(label: str, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*exe, *args], capture_output=True, text=True, env=env, timeout=timeout,
                              cwd=tmp_path)
        outputs[label] = done.stdout + done.stderr
        return done

    # 1. Hooks fail against the databases: the file dead-letter store fills (a file-source run).
    pop = subprocess.run([sys.executable, "-c", POPULATE, file_cfg, str(messages)], capture_output=True, text=True,
                         env=env, timeout=120, cwd=tmp_path)
    outputs["run (file source) + /metrics"] = pop.stdout + pop.stderr
    entries = [json.loads(line) for line in store.read_text().splitlines()]
    assert {e["hook"] for e in entries} == {"dbfail", "message", "flaky"}, pop.stderr[-3000:]
    assert '"exception"' in pop.stderr and "OperationalError" in pop.stderr  # tracebacks are logged, minus secrets

    # 2. Every command.
    assert run("replay", ["replay", str(messages), "--config", file_cfg]).returncode == 1
    assert run("replay --hook", ["replay", str(messages), "--hook", str(tmp_path / "hooks" / "message.py")]
               ).returncode == 1
    with_env = env
    env = {k: v for k, v in env.items() if k != "SIDECAR_DATABASES__SOURCE"}  # so each URL is the one checked
    for name, cfg in zip(databases["auxiliary"], check_cfgs, strict=True):  # type: ignore[arg-type]
        assert run(f"check {name}", ["check", "--config", cfg, "--timeout", "2"]).returncode == 4
        assert f"database auxiliary.{name} (" in outputs[f"check {name}"] and "***" in outputs[f"check {name}"]
    env = with_env
    assert run("check broken yaml", ["check", "--config", str(broken_yaml)]).returncode == 2
    assert run("check kafka", ["check", "--config", kafka_cfg, "--timeout", "2"]).returncode in (4, 5)
    assert run("dead-letters list", ["dead-letters", "list", "--config", file_cfg]).returncode == 0
    for entry in entries:
        assert run(f"show {entry['id']}", ["dead-letters", "show", entry["id"], "--config", file_cfg]).returncode == 0
    marker.write_text("fixed")
    assert run("dead-letters replay", ["dead-letters", "replay", "--config", file_cfg]).returncode == 1
    ledger = Path(str(store) + ".replayed")
    assert ledger.read_text().strip(), "the flaky hook's entries should have been replayed"
    connect_url = f"http://admin:{CONNECT_PW}@127.0.0.1:{connect_server}"
    assert run("connectors apply", ["connectors", "apply", str(connector), "--connect-url", connect_url,
                                    "--timeout", "3"]).returncode == 6
    assert run("connectors status", ["connectors", "status", str(connector), "--connect-url", connect_url]
               ).returncode == 6
    assert FakeConnect.auth_seen and all(h.startswith("Basic ") for h in FakeConnect.auth_seen)  # basic auth works
    embedded = run("run embedded", ["run", "--config", embedded_cfg], timeout=120)
    assert embedded.returncode != 0
    for cmd in all_commands():
        assert run("help " + " ".join(cmd), [*cmd, "--help"]).returncode == 0

    # 3. `run` in Kafka mode against a closed loopback port (SASL settings in use); scrape /metrics.
    proc = subprocess.Popen([*exe, "run", "--config", kafka_cfg], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=tmp_path)
    scraped = ""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not scraped:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=2) as resp:
                    scraped = resp.read().decode()
            except OSError:
                time.sleep(0.3)
        time.sleep(2)  # let librdkafka's SASL/connection errors reach the log
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    outputs["run kafka"] = out + err
    outputs["/metrics"] = scraped
    assert "checkpoint_build_info" in scraped

    # 4. What the Kafka dead-letter writer would produce for the same entries.
    from sidecar.sources.kafka_dead_letters import KafkaDeadLetterWriter

    produced: list[bytes] = []

    class StubProducer:
        def __init__(self, conf: dict[str, Any]) -> None:
            pass

        def produce(self, topic: str, key: bytes, value: bytes, on_delivery: Any) -> None:
            produced.append(value)

        def flush(self, timeout: float) -> int:
            return 0

        def poll(self, timeout: float) -> int:
            return 0

    writer = KafkaDeadLetterWriter({"bootstrap.servers": "127.0.0.1:1"}, "dlq", producer_factory=StubProducer)
    for entry in entries:
        writer.write(entry)
    writer.sync()
    outputs["kafka dead letters"] = b"\n".join(produced).decode()

    outputs["file dead-letter store"] = store.read_text()
    outputs["replay ledger"] = ledger.read_text()
    (tmp_path / "outputs.json").write_text(json.dumps(outputs, indent=1))  # for a person reading a failure
    leaks = [(label, secret, form) for label, text in outputs.items() for secret in SECRETS
             for form in forms(secret) if form in text]
    assert not leaks, "secrets found in outputs:\n" + "\n".join(
        f"  {label}: {secret!r} as {form!r}: …{outputs[label][max(0, outputs[label].find(form) - 150):][:300]}…"
        for label, secret, form in leaks[:10])
    # The commands did run into the failures whose messages could have leaked.
    assert "OperationalError" in outputs["file dead-letter store"]
    assert "Can't connect to MySQL server on '127.0.0.1'" in outputs["run kafka"]  # the '@' password works
