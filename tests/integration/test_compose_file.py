"""docker-compose.yml: valid against the Compose specification, same Debezium/ports as the local stack.

No Docker engine runs here, so the file is validated offline: the Compose JSON schema comes
from the docker-compose 1.29.2 wheel on PyPI (compose/config/compose_spec.json).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import yaml

from tests.fixtures import pinned_debezium_version
from tests.integration.stack import REPO

CACHE = Path.home() / ".cache" / "checkpoint-sidecar"


def compose_schema() -> dict[str, object]:
    target = CACHE / "compose_spec.json"
    if not target.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "docker-compose==1.29.2",
                        "-d", str(CACHE)], check=True, timeout=120)
        wheel = next(CACHE.glob("docker_compose-1.29.2-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            target.write_bytes(z.read("compose/config/compose_spec.json"))
    return json.loads(target.read_text())  # type: ignore[no-any-return]


def compose() -> dict[str, object]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_compose_file_matches_the_compose_spec() -> None:
    """The compose file validates against the Compose specification's JSON schema."""
    schema = compose_schema()
    # It declares "draft/2019-09/schema#", a spelling jsonschema does not look up: say it.
    jsonschema.Draft201909Validator.check_schema(schema)
    jsonschema.Draft201909Validator(schema).validate(compose())


def test_compose_debezium_version_matches_pom() -> None:
    """The Connect image runs the Debezium version the pom pins for the local stack."""
    services = compose()["services"]
    assert isinstance(services, dict)
    image = services["connect"]["image"]
    assert image.endswith(":" + pinned_debezium_version())


def test_compose_ports_match_local_stack() -> None:
    """Host ports equal the local stack's defaults."""
    services = compose()["services"]
    assert isinstance(services, dict)
    ports = {name: services[name]["ports"][0].split(":")[0] for name in ("postgres", "mariadb", "kafka", "connect")}
    stack = (REPO / "deploy" / "local" / "stack").read_text()
    for name, var in (("postgres", "STACK_PG_PORT"), ("mariadb", "STACK_MARIADB_PORT"),
                      ("kafka", "STACK_KAFKA_PORT"), ("connect", "STACK_CONNECT_PORT")):
        assert f'{var}:={ports[name]}' in stack
