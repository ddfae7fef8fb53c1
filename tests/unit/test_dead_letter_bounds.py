"""Dead letters: bounded entries, owner-only file, and producer failures as a clear DeadLetterError."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException

from sidecar.dead_letters import FileDeadLetters, bound_entry, make_entry, read_file
from sidecar.errors import DeadLetterError, SourceError
from sidecar.events import RawMessage
from sidecar.sources.kafka_dead_letters import KafkaDeadLetterWriter
from sidecar.sources.kafka_settings import shared_settings


def _raw(size: int) -> RawMessage:
    return RawMessage(topic="shop.public.orders", partition=3, offset=4242, key=b'{"id":1}', value=b"v" * size)


def test_too_large_message_keeps_head_and_coordinates(tmp_path: Path) -> None:
    """A too_large message is stored as its head plus coordinates and a hash, never whole."""
    entry = make_entry(pipeline="p", kind="decode_failed", raw=_raw(20 * 1024 * 1024), reason="too_large",
                       detail="message of 20971520 bytes exceeds 10485760")
    store = FileDeadLetters(tmp_path / "dl.jsonl")
    store.write(entry)
    store.close()
    data = (tmp_path / "dl.jsonl").read_bytes()
    assert len(data) < 200_000
    [kept] = list(read_file(tmp_path / "dl.jsonl"))
    msg = kept["message"]
    assert (msg["topic"], msg["partition"], msg["offset"]) == ("shop.public.orders", 3, 4242)
    assert msg["value"] == "v" * msg["truncated"]["kept_bytes"]
    assert msg["truncated"]["value_bytes"] == 20 * 1024 * 1024 and len(msg["truncated"]["value_sha256"]) == 64
    assert kept["reason"] == "too_large" and kept["id"] == entry["id"]


@pytest.mark.parametrize("limit", [4096, 100_000, 1_000_000])
def test_any_entry_fits_the_limit(limit: int) -> None:
    """Whatever the message and error size, the serialised entry stays within the store's limit."""
    entry = make_entry(pipeline="p", kind="hook_failed", raw=_raw(3 * 1024 * 1024), reason="attempts_exhausted",
                       hook="h", error=ValueError("e" * 100_000), attempts=5)
    reduced, data = bound_entry(entry, limit)
    assert len(data) <= limit and orjson.loads(data) == reduced
    assert reduced["message"]["offset"] == 4242 and "truncated" in reduced["message"]


def test_small_entry_is_kept_whole() -> None:
    """An entry under the limit is stored exactly as made."""
    entry = make_entry(pipeline="p", kind="hook_failed", raw=_raw(100), reason="attempts_exhausted", hook="h")
    assert bound_entry(entry, 1_000_000) == (entry, orjson.dumps(entry))


def test_file_store_is_owner_only(tmp_path: Path) -> None:
    """The dead-letter file is created 0600 (it holds whole rows), also when it existed more open."""
    FileDeadLetters(tmp_path / "new.jsonl").close()
    assert stat.S_IMODE((tmp_path / "new.jsonl").stat().st_mode) == 0o600
    old = tmp_path / "old.jsonl"
    old.write_text("")
    old.chmod(0o644)
    FileDeadLetters(old).close()
    assert stat.S_IMODE(old.stat().st_mode) == 0o600


class _Producer:
    def __init__(self, conf: dict[str, Any], fail: BaseException | None = None, deliver_err: Any = None) -> None:
        self.conf, self.fail, self.deliver_err = conf, fail, deliver_err
        self.values: list[bytes] = []

    def produce(self, topic: str, key: bytes, value: bytes, on_delivery: Any) -> None:
        if self.fail is not None:
            raise self.fail
        self.values.append(value)
        on_delivery(self.deliver_err, None)

    def flush(self, timeout: float) -> int:
        return 0

    def poll(self, timeout: float) -> int:
        return 0


def _writer(conf: dict[str, str], settings: dict[str, str] | None = None, **producer: Any) -> KafkaDeadLetterWriter:
    return KafkaDeadLetterWriter(conf, "dlq", settings, producer_factory=lambda c: _Producer(c, **producer))


@pytest.mark.parametrize("failure", [
    KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)),
    BufferError("Local: Queue full"),
])
def test_producer_failure_is_a_dead_letter_error(failure: BaseException) -> None:
    """A refused produce is a DeadLetterError (a SourceError the loop handles), not a raw KafkaException."""
    entry = make_entry(pipeline="p", kind="hook_failed", raw=_raw(10), reason="attempts_exhausted")
    with pytest.raises(DeadLetterError, match="could not write dead letter") as info:
        _writer({"bootstrap.servers": "127.0.0.1:1"}, fail=failure).write(entry)
    assert isinstance(info.value, SourceError)


def test_delivery_failure_is_a_dead_letter_error() -> None:
    """A delivery report with an error is a DeadLetterError naming the entry, raised by `sync`
    (which runs before every offset commit)."""
    entry = make_entry(pipeline="p", kind="hook_failed", raw=_raw(10), reason="attempts_exhausted")
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    writer = _writer({"bootstrap.servers": "127.0.0.1:1"}, deliver_err=too_large)
    writer.write(entry)
    with pytest.raises(DeadLetterError, match=f"{entry['id']}.*MSG_SIZE_TOO_LARGE"):
        writer.sync()


def test_kafka_entries_fit_message_max_bytes() -> None:
    """Entries are cut to the producer's message.max.bytes before produce (a 3 MiB message does not fail)."""
    writer = _writer({"bootstrap.servers": "127.0.0.1:1", "message.max.bytes": "200000"})
    writer.write(make_entry(pipeline="p", kind="hook_failed", raw=_raw(3 * 1024 * 1024), reason="attempts_exhausted"))
    [value] = writer._producer.values
    assert len(value) <= 200_000 - 1024


def test_producer_and_admin_get_every_shared_setting() -> None:
    """SSL verification/CA, DNS lookup, message size, SASL… reach the producer; consumer-only ones do not."""
    consumer = {"bootstrap.servers": "127.0.0.1:1", "group.id": "g", "enable.auto.commit": "false",
                "auto.offset.reset": "earliest", "session.timeout.ms": "6000",
                "partition.assignment.strategy": "cooperative-sticky", "security.protocol": "SASL_SSL",
                "ssl.endpoint.identification.algorithm": "none", "ssl.ca.location": "/ca.pem",
                "enable.ssl.certificate.verification": "false",
                "client.dns.lookup": "resolve_canonical_bootstrap_servers_only",
                "message.max.bytes": "5000000", "sasl.mechanism": "PLAIN", "sasl.password": "x",
                "topic.metadata.refresh.interval.ms": "1000", "reconnect.backoff.ms": "10"}
    shared = shared_settings(consumer)
    assert set(shared) == set(consumer) - {"group.id", "enable.auto.commit", "auto.offset.reset",
                                           "session.timeout.ms", "partition.assignment.strategy"}
    writer = _writer(consumer, {"compression.type": "zstd", "message.max.bytes": "8000000"})
    conf = writer._producer.conf
    assert conf["ssl.ca.location"] == "/ca.pem" and conf["client.dns.lookup"].startswith("resolve")
    assert conf["compression.type"] == "zstd" and conf["message.max.bytes"] == "8000000"  # own settings win
    assert conf["acks"] == "all" and "group.id" not in conf


def test_readiness_probe_admin_client_gets_shared_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The BrokerProbe's admin client gets SSL/DNS/SASL settings too (it used to get only a few prefixes)."""
    import confluent_kafka.admin

    from sidecar.sources.kafka import BrokerProbe

    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", lambda conf: seen.append(conf))
    BrokerProbe({"bootstrap.servers": "127.0.0.1:1", "group.id": "g", "client.dns.lookup": "use_all_dns_ips",
                 "enable.ssl.certificate.verification": "false", "message.max.bytes": "5000000"})
    [conf] = seen
    assert conf["client.dns.lookup"] == "use_all_dns_ips" and conf["enable.ssl.certificate.verification"] == "false"
    assert conf["message.max.bytes"] == "5000000" and "group.id" not in conf
