"""What `check`, `dead-letters list` and the readiness probe say when Kafka does not answer."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from sidecar.sources.kafka_probe import LOCAL_HINT, no_answer

TIMED_OUT = KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata: Local: Broker transport failure"))


@pytest.mark.parametrize("servers", [
    "127.0.0.1:9092", "localhost:9092,127.0.0.2:9093", "[::1]:9092", "::1", "PLAINTEXT://127.0.0.1:9",
    "SSL://localhost:9093", "[::ffff:127.0.0.1]:9092", "[0:0:0:0:0:0:0:1]:9092", "localhost.:9092", "127.0.0.1",
    " 127.0.0.1:9092 , localhost:9093", "127.1:9092",
])
def test_a_loopback_broker_that_does_not_answer_says_how_to_start_the_local_one(servers: str) -> None:
    text = str(no_answer(servers, TIMED_OUT))
    assert text == f"Kafka at {servers} did not answer: Failed to get metadata: Local: Broker transport failure" \
        + LOCAL_HINT
    assert "deploy/local/stack up kafka" in text


@pytest.mark.parametrize("servers", [
    "kafka.prod:9092", "127.0.0.1:9092,kafka.prod:9092", "", "127.corp.example:9092", "10.0.0.5:9092",
    "SASL_SSL://[2001:db8::1]:9093", "10.1:9092", "999.1:9092",
])
def test_a_remote_broker_gets_no_local_stack_hint(servers: str) -> None:
    text = str(no_answer(servers, TIMED_OUT))
    assert text.startswith(f"Kafka at {servers} did not answer: Failed to get metadata")
    assert "deploy/local" not in text
