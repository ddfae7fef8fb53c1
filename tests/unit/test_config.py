"""Config: YAML + env overrides, errors that name the key, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.config import load_settings
from sidecar.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_example_config_is_valid() -> None:
    """The shipped annotated example loads."""
    s = load_settings(REPO / "config.example.yaml")
    assert s.pipeline == "orders-pipeline"
    assert set(s.hooks) == {"audit_log", "pipeline_stats", "high_value_notify"}


def test_env_overrides_nested_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIDECAR_A__B overrides a nested YAML key; hooks are reachable by name."""
    monkeypatch.setenv("SIDECAR_SOURCE__KAFKA__GROUP_ID", "from-env")
    monkeypatch.setenv("SIDECAR_HOOKS__AUDIT_LOG__TABLES", '["public.orders"]')
    s = load_settings(REPO / "config.example.yaml")
    assert s.source.kafka is not None and s.source.kafka.group_id == "from-env"
    assert s.hooks["audit_log"].tables == ["public.orders"]


def test_wrong_key_is_named(tmp_path: Path) -> None:
    """A typo'd key fails with its dotted path and env name."""
    p = write(tmp_path, "pipeline: p\nsource: {kind: kafka, kafka: {topics: [a], bootstrap_server: x}}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(p)
    assert "source.kafka.bootstrap_server: unknown key" in str(err.value)


def test_missing_topics_and_bad_pattern(tmp_path: Path) -> None:
    """Kafka needs topics or a ^-anchored regex."""
    with pytest.raises(ConfigError, match="topics"):
        load_settings(write(tmp_path, "pipeline: p\nsource: {kind: kafka, kafka: {}}\n"))
    with pytest.raises(ConfigError, match="must start with"):
        load_settings(write(tmp_path, "pipeline: p\nsource: {kind: kafka, kafka: {topic_pattern: 'shop'}}\n"))


def test_missing_pipeline_and_bad_yaml(tmp_path: Path) -> None:
    """Missing required key and broken YAML each give a clear error."""
    with pytest.raises(ConfigError, match="pipeline: required key is missing"):
        load_settings(write(tmp_path, "source: {kind: kafka, kafka: {topics: [a]}}\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path, "pipeline: [unclosed\n"))


def test_hook_needs_exactly_one_target(tmp_path: Path) -> None:
    """A hook names a path or a module, not both or neither."""
    with pytest.raises(ConfigError, match=r"hooks\.h"):
        load_settings(write(tmp_path, "pipeline: p\nsource: {kind: kafka, kafka: {topics: [a]}}\nhooks: {h: {}}\n"))


def test_secrets_from_files_and_never_in_repr(tmp_path: Path) -> None:
    """file:/path secrets are read; SecretStr hides them from repr and errors."""
    secret = tmp_path / "url"
    secret.write_text("mysql+pymysql://u:hunter2@127.0.0.1/x\n")
    p = write(
        tmp_path,
        "pipeline: p\nsource: {kind: kafka, kafka: {topics: [a], settings: {sasl.password: hunter2}}}\n"
        f"databases: {{auxiliary: {{audit: 'file:{secret}'}}}}\n",
    )
    s = load_settings(p)
    assert "hunter2" not in repr(s)
    _, _, aux = s.databases.urls()
    assert aux["audit"] == "mysql+pymysql://u:hunter2@127.0.0.1/x"
    assert s.source.kafka is not None and s.source.kafka.librdkafka()["sasl.password"] == "hunter2"
    assert s.source.kafka.librdkafka()["auto.offset.reset"] == "earliest"


def test_connector_files_expand_and_templates_parse() -> None:
    """Every connector file and template is valid JSON once placeholders are filled."""
    from sidecar import connectors as cx

    env = {k: "x" for k in ("MYSQL_HOST", "MYSQL_CDC_USER", "MYSQL_CDC_PASSWORD", "MYSQL_DATABASE_INCLUDE_LIST",
                            "KAFKA_BOOTSTRAP_SERVERS", "MSSQL_HOST", "MSSQL_CDC_USER", "MSSQL_CDC_PASSWORD",
                            "MSSQL_DATABASE", "MSSQL_TABLE_INCLUDE_LIST", "ORACLE_HOST", "ORACLE_CDC_USER",
                            "ORACLE_CDC_PASSWORD", "ORACLE_DBNAME", "ORACLE_PDB", "ORACLE_TABLE_INCLUDE_LIST",
                            "MONGODB_CONNECTION_STRING", "MONGODB_COLLECTION_INCLUDE_LIST")}
    files = sorted((REPO / "connectors").glob("*.json")) + sorted((REPO / "connectors" / "templates").glob("*.json"))
    assert len(files) == 6
    for path in files:
        name, config = cx.load_connector(path, env)
        assert name and config["provide.transaction.metadata"] == "true"
        assert config["value.converter"] == "org.apache.kafka.connect.json.JsonConverter"
        assert "transforms" not in config


def test_connector_placeholder_without_value_is_named() -> None:
    """A placeholder with no default and no env value names the variable to set."""
    from sidecar import connectors as cx
    from sidecar.errors import ConnectorError

    with pytest.raises(ConnectorError, match="set the environment variable MYSQL_HOST"):
        cx.load_connector(REPO / "connectors" / "templates" / "mysql.json", {})


def test_hook_needs_exactly_one_of_path_module_entry_point() -> None:
    """entry_point is a third way to name a hook; two at once is refused."""
    from sidecar.config import HookConfig

    assert HookConfig(entry_point="acme_notify").entry_point == "acme_notify"
    with pytest.raises(ValueError, match="exactly one of path"):
        HookConfig(path="h.py", entry_point="acme_notify")


def test_bulk_mode_with_key_ordering_refused_at_load(tmp_path: Path) -> None:
    """mode transaction/batch with ordering key is a config error naming the hook key."""
    for mode in ("transaction", "batch"):
        p = write(tmp_path, "pipeline: p\nsource: {kind: file, file: {path: x}}\n"
                            f"hooks: {{h: {{path: h.py, mode: {mode}, ordering: key}}}}\n")
        with pytest.raises(ConfigError, match=r"hooks\.h: .*ordering key does not apply"):
            load_settings(p)


def test_a_section_env_override_that_is_not_json_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole section in one variable (SIDECAR_DATABASES='{...') that is cut off: named, exit 2,
    without the value (it may hold a password)."""
    monkeypatch.setenv("SIDECAR_DATABASES", '{"source": "postgresql://u:Zq8EnvSecret@127.0.0.1/db"')
    with pytest.raises(ConfigError) as err:
        load_settings(None)
    assert "SIDECAR_DATABASES must be JSON" in str(err.value) and "SIDECAR_DATABASES__<KEY>" in str(err.value)
    assert "Zq8EnvSecret" not in str(err.value)


def test_a_nested_section_env_override_that_is_not_json_is_named_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIDECAR_DATABASES__AUXILIARY holds a section (name → URL) too: a URL there is named as that
    variable, not as SIDECAR_DATABASES (which the user did not set), and the way out is one level
    deeper. A plain nested value (a URL for destination) is not a suspect."""
    monkeypatch.setenv("SIDECAR_DATABASES__AUXILIARY", "mysql+pymysql://u:Zq8EnvSecret@127.0.0.1/db")
    monkeypatch.setenv("SIDECAR_DATABASES__DESTINATION", "postgresql://u:Zq8EnvSecret@127.0.0.1/db")
    with pytest.raises(ConfigError) as err:
        load_settings(None)
    assert "SIDECAR_DATABASES__AUXILIARY must be JSON" in str(err.value), err.value
    assert "SIDECAR_DATABASES__AUXILIARY__<KEY>=value" in str(err.value) and "Zq8EnvSecret" not in str(err.value)


@pytest.mark.parametrize(("name", "value", "says"), [
    ("SIDECAR_SOURCE__KAFKA__TOPICS", "orders", "SIDECAR_SOURCE__KAFKA__TOPICS must be a JSON list"),
    ("SIDECAR_SOURCE__KAFKA__SETTINGS", "sasl.mechanism=PLAIN", "SIDECAR_SOURCE__KAFKA__SETTINGS must be JSON"),
    ("sidecar_databases__auxiliary", "mysql://h/x", "sidecar_databases__auxiliary must be JSON"),
    ("SIDECAR_DATABASES__AUXILIARY", "[" * 100_000, "SIDECAR_DATABASES__AUXILIARY is nested too deeply"),
])
def test_a_section_variable_that_is_not_json_is_named_as_it_is_set(
        monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str) -> None:
    """Found by review: optional sections (source.kafka), lists, a variable set in lower case, and
    a value too deeply nested to parse were named as the top-level SIDECAR_SOURCE / in upper case,
    or raised; a list is not a section whose keys can be set one by one."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings(None)
    assert says in str(err.value), err.value
    assert ("__<KEY>" in str(err.value)) is ("must be JSON" in says)


@pytest.mark.parametrize(("soft", "hard", "ok"), [(1000, 10000, True), (0, 100, True), (9999, 10000, True),
                                                  (10000, 10000, False), (20000, 10000, False)])
def test_soft_max_in_flight_below_max_in_flight(tmp_path: Path, soft: int, hard: int, ok: bool) -> None:
    """At or above the hard bound the soft one would never act: refused, saying so (0 turns it off)."""
    p = write(tmp_path, "pipeline: p\nsource: {kind: kafka, kafka: {topics: [a]}}\n"
                        f"dispatch: {{soft_max_in_flight: {soft}, max_in_flight: {hard}}}\n")
    if ok:
        assert load_settings(p).dispatch.soft_max_in_flight == soft
        return
    with pytest.raises(ConfigError) as err:
        load_settings(p)
    assert f"soft_max_in_flight ({soft}) must be below max_in_flight ({hard}), or 0" in str(err.value)


@pytest.mark.parametrize(("hard", "soft"), [(10000, 1000), (1001, 1000), (1000, 500), (500, 250), (1, 0)])
def test_soft_max_in_flight_not_set_follows_a_low_max_in_flight(tmp_path: Path, hard: int, soft: int) -> None:
    """A config that lowers max_in_flight (to 1,000 or less) and says nothing of the soft bound keeps
    loading: the soft bound is then half of it (1: 0, off)."""
    p = write(tmp_path, "pipeline: p\nsource: {kind: kafka, kafka: {topics: [a]}}\n"
                        f"dispatch: {{max_in_flight: {hard}}}\n")
    assert load_settings(p).dispatch.soft_max_in_flight == soft


def test_soft_max_in_flight_follows_max_in_flight_set_in_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment gives text: SIDECAR_DISPATCH__MAX_IN_FLIGHT=500 makes the unset soft bound 250
    (config.example.yaml's too); with the soft bound set to 1,000 in the file, the same variable is
    refused, naming both."""
    monkeypatch.setenv("SIDECAR_DISPATCH__MAX_IN_FLIGHT", "500")
    p = write(tmp_path, "pipeline: p\nsource: {kind: kafka, kafka: {topics: [a]}}\n")
    assert load_settings(p).dispatch.soft_max_in_flight == 250
    # config.example.yaml leaves the soft bound unset: a user lowering max_in_flight gets half of it
    assert load_settings(REPO / "config.example.yaml").dispatch.soft_max_in_flight == 250
    set_soft = write(tmp_path, "pipeline: p\nsource: {kind: kafka, kafka: {topics: [a]}}\n"
                               "dispatch: {soft_max_in_flight: 1000}\n")
    with pytest.raises(ConfigError, match=r"soft_max_in_flight \(1000\) must be below max_in_flight \(500\)"):
        load_settings(set_soft)


def test_thread_loop_needs_a_serial_hook_without_timeout(tmp_path: Path) -> None:
    """`thread: loop` loads for a serial hook without timeout; with concurrency 2, a timeout_s or an
    unknown value it is refused with the key and what to do."""
    base = "pipeline: p\nsource: {kind: kafka, kafka: {topics: [a]}}\nhooks:\n  h: {path: h.py, mode: transaction, "
    assert load_settings(write(tmp_path, base + "thread: loop}\n")).hooks["h"].thread == "loop"
    assert load_settings(write(tmp_path, base + "ordering: none}\n")).hooks["h"].thread == "workers"
    with pytest.raises(ConfigError, match=r"hooks\.h.*thread: loop.*sets concurrency 2 \(it needs 1\): change "
                                          r"that, or set thread: workers"):
        load_settings(write(tmp_path, base + "thread: loop, concurrency: 2}\n"))
    with pytest.raises(ConfigError) as err:  # only what is wrong is named
        load_settings(write(tmp_path, base + "thread: loop, timeout_s: 5}\n"))
    assert "sets timeout_s 5 (remove it):" in str(err.value) and "concurrency" not in str(err.value)
    with pytest.raises(ConfigError, match=r"hooks\.h\.thread"):
        load_settings(write(tmp_path, base + "thread: main}\n"))
