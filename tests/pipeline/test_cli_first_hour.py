"""What a new user meets first on the command line: missing --config, missing files, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from sidecar.cli import EXIT_BROKER, EXIT_CONFIG, EXIT_CONNECT, main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_sidecar_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("SIDECAR_"):
            monkeypatch.delenv(key)


@pytest.mark.parametrize("args", [["run"], ["check"], ["dead-letters", "list"]])
def test_commands_without_config_say_pass_config(args: list[str]) -> None:
    """Without --config (and no env) the error says what to do, not which keys are missing."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == EXIT_CONFIG, result.output
    assert "pass --config FILE" in result.output


def test_config_from_env_alone_still_works(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The hint does not take away env-only configuration: every key from SIDECAR_… still loads."""
    monkeypatch.setenv("SIDECAR_PIPELINE", "p")
    monkeypatch.setenv("SIDECAR_SOURCE__KIND", "file")
    monkeypatch.setenv("SIDECAR_SOURCE__FILE__PATH", str(tmp_path / "x.jsonl"))
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    assert "config: ok" in result.output


def embedded_config(tmp_path: Path, connector: str) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "pipeline: p\n"
        "source:\n"
        "  kind: embedded\n"
        f"  embedded: {{connector: {connector}, preflight: false, state_dir: {tmp_path / 'state'}}}\n"
    )
    return cfg


def test_check_embedded_missing_connector_file_fails(tmp_path: Path) -> None:
    """`check` finds what `run` would refuse: an embedded connector file that does not exist."""
    cfg = embedded_config(tmp_path, "connectors/nope.json")
    result = CliRunner().invoke(main, ["check", "--config", str(cfg)])
    assert result.exit_code == EXIT_CONFIG, result.output
    assert "nope.json" in result.output


def test_check_embedded_with_connector_file_is_ok(tmp_path: Path) -> None:
    """An existing connector file (found like `run` finds it) passes `check`."""
    cfg = embedded_config(tmp_path, str(REPO / "connectors" / "postgres-shop.json"))
    result = CliRunner().invoke(main, ["check", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "embedded connector: ok (shop-postgres from" in result.output


@pytest.mark.parametrize(("content", "says"), [
    (b"", "it is empty"),
    (b"{}\n", "no Java serialization header"),
    (None, "fix its path or permissions"),  # a directory where the file should be
])
def test_check_embedded_refuses_an_unreadable_offsets_file(tmp_path: Path, content: bytes | None, says: str) -> None:
    """`check` finds (without a JVM) the offsets file `run` would refuse at start: empty, not one,
    or not a file; a valid header passes (a stream cut later is found by `run`)."""
    cfg = embedded_config(tmp_path, str(REPO / "connectors" / "postgres-shop.json"))
    offsets = tmp_path / "state" / "offsets.dat"
    offsets.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        offsets.mkdir()
    else:
        offsets.write_bytes(content)
    result = CliRunner().invoke(main, ["check", "--config", str(cfg)])
    assert result.exit_code == EXIT_BROKER, result.output
    assert str(offsets) in result.output and says in result.output
    if content is not None:
        assert offsets.read_bytes() == content  # not touched
        offsets.write_bytes(b"\xac\xed\x00\x05w\x04\x00\x00\x00\x00")
        result = CliRunner().invoke(main, ["check", "--config", str(cfg)])
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("target", ["volume/offsets.dat", "volume-there/offsets.dat", "state/offsets.dat"])
def test_check_embedded_refuses_a_symlinked_offsets_file(tmp_path: Path, target: str) -> None:
    """An offsets file that is a symbolic link is refused (the store's rename would replace the
    link; a dangling one — a volume not mounted — would look like a first start), whether it
    dangles, points at a real file, or points at itself; the real path passes."""
    cfg = embedded_config(tmp_path, str(REPO / "connectors" / "postgres-shop.json"))
    offsets = tmp_path / "state" / "offsets.dat"
    offsets.parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "volume-there").mkdir()
    (tmp_path / "volume-there" / "offsets.dat").write_bytes(b"\xac\xed\x00\x05w\x04\x00\x00\x00\x00")
    offsets.symlink_to(tmp_path / target)
    result = CliRunner().invoke(main, ["check", "--config", str(cfg)])
    assert result.exit_code == EXIT_BROKER, result.output
    assert str(offsets) in result.output and f"symbolic link (to {tmp_path / target})" in result.output
    assert "offsets_file" in result.output
    offsets.unlink()
    result = CliRunner().invoke(main, ["check", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert not offsets.exists()  # check creates nothing


def test_check_embedded_names_an_offsets_directory_it_cannot_search(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A state directory without search permission (what a non-root user meets; the tests run as
    root, so the error is raised where the path is first looked at): exit 5 naming the file."""
    cfg = embedded_config(tmp_path, str(REPO / "connectors" / "postgres-shop.json"))
    offsets = tmp_path / "state" / "offsets.dat"

    def denied(self: Path) -> bool:
        if self == offsets:
            raise PermissionError(13, "Permission denied", str(self))
        return False

    monkeypatch.setattr(Path, "is_symlink", denied)
    result = CliRunner().invoke(main, ["check", "--config", str(cfg)])
    assert result.exit_code == EXIT_BROKER, result.output
    assert str(offsets) in result.output and "(Permission denied)" in result.output


@pytest.mark.parametrize("command", ["status", "apply"])
def test_connectors_without_files_fail(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside the repo (no connectors/*.json) `connectors status|apply` fail instead of printing nothing."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["connectors", command, "--connect-url", "http://127.0.0.1:9"])
    assert result.exit_code == EXIT_CONNECT, result.output
    assert "no connector files" in result.output


def kafka_config(tmp_path: Path, setting: str) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "pipeline: p\n"
        "source:\n"
        "  kind: kafka\n"
        "  kafka:\n"
        "    bootstrap_servers: 127.0.0.1:9\n"  # a closed port: nothing answers
        "    topics: [fx.public.orders]\n"
        "    settings: {security.protocol: SASL_PLAINTEXT, sasl.mechanism: PLAIN, sasl.username: bob,\n"
        f"               sasl.password: Zq8SaslSecret, {setting}}}\n"
        "databases: {destination: 'postgresql+psycopg://u:pw@127.0.0.1:9/db'}\n"  # unreachable: checked later
    )
    return cfg


@pytest.mark.parametrize(("setting", "says"), [
    ("sasl.mechanism: FOO", "Unsupported SASL mechanism: FOO"),
    ("sasl.passwrd: x", 'No such configuration property: "sasl.passwrd"'),
    ("session.timeout.ms: notanumber", 'Invalid value for configuration property "session.timeout.ms"'),
])
@pytest.mark.parametrize("command", [["check"], ["dead-letters", "list"]])
def test_kafka_settings_librdkafka_refuses_are_config_errors(tmp_path: Path, setting: str, says: str,
                                                             command: list[str]) -> None:
    """`check` and the dead-letter commands name a Kafka setting librdkafka refuses (exit 2), as
    `run` does, instead of a traceback (the admin client alone ignores consumer-only settings);
    `check` finds it first, as the config error it is, before it tries to reach a database."""
    cfg = kafka_config(tmp_path, setting)
    result = CliRunner().invoke(main, [*command, "--config", str(cfg)])
    assert result.exit_code == EXIT_CONFIG, result.output
    assert "librdkafka refuses them: " in result.output and says in result.output
    assert "Traceback" not in result.output and "Zq8SaslSecret" not in result.output
    assert "config: ok" not in result.output  # a config error, found before the database is tried
