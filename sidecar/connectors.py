"""Kafka Connect REST: register/update the connector configs in `connectors/` and report status.

Config files hold `${NAME}` / `${NAME:-default}` placeholders filled from the environment;
values of secret-named keys (`database.password`, …) join the secret redactor.
A Connect URL may carry user info (`https://user:pass@connect:8083`): it is sent as HTTP basic
auth (urllib does not do that itself) and masked wherever the URL is shown.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from sidecar import secrets
from sidecar.errors import ConnectorError

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(text: str, env: dict[str, str] | None = None, where: str = "") -> str:
    env = dict(os.environ) if env is None else env

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConnectorError(f"{where}: placeholder ${{{name}}} has no value: set the environment variable {name}")

    return _PLACEHOLDER.sub(sub, text)


def load_connector(path: Path, env: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    try:
        doc = json.loads(expand(path.read_text(encoding="utf-8"), env, str(path)))
    except json.JSONDecodeError as exc:
        raise ConnectorError(f"{path}: not valid JSON after filling placeholders: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConnectorError(f"{path}: not UTF-8 text (byte {exc.start + 1} cannot be read): save it as UTF-8") \
            from None
    if not isinstance(doc, dict) or "name" not in doc or not isinstance(doc.get("config"), dict):
        raise ConnectorError(f"{path}: expected {{\"name\": ..., \"config\": {{...}}}}")
    config = {k: str(v) for k, v in doc["config"].items()}
    register_secrets(config)
    return str(doc["name"]), config


def register_secrets(props: dict[str, str]) -> None:
    """Secret-named connector/engine properties (database.password, …) are never printed."""
    for key, value in props.items():
        if secrets.SECRET_NAME.search(key):
            secrets.register(value)


def split_auth(url: str) -> tuple[str, dict[str, str]]:
    """`http://user:pass@host:8083` → ("http://host:8083", {"Authorization": "Basic …"}); the
    password is registered as a secret. Percent-escapes in user info are decoded first."""
    scheme, user, password, rest = secrets.split_userinfo(url)
    if user is None:
        return url, {}
    secrets.register_all(secrets.url_secrets(url))
    creds = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password or '')}"
    secrets.register(base64.b64encode(creds.encode()).decode())
    return scheme + rest, {"Authorization": "Basic " + base64.b64encode(creds.encode()).decode()}


def _request(url: str, method: str = "GET", body: Any = None, timeout: float = 30.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    bare, auth = split_auth(url)
    url = secrets.mask_url(url)  # what error messages show
    req = urllib.request.Request(bare, data=data, method=method, headers={"Content-Type": "application/json", **auth})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")
        with contextlib.suppress(json.JSONDecodeError, AttributeError):
            detail = json.loads(detail).get("message", detail)
        raise ConnectorError(secrets.scrub(f"Kafka Connect {method} {url} answered {exc.code}: {detail}")) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:  # ValueError: http.client's InvalidURL
        raise ConnectorError(secrets.scrub(f"Kafka Connect at {url} is unreachable: {exc}")) from None


def apply(connect_url: str, path: Path, env: dict[str, str] | None = None) -> str:
    """Create or update one connector (PUT /connectors/NAME/config is idempotent)."""
    name, config = load_connector(path, env)
    _request(f"{connect_url.rstrip('/')}/connectors/{name}/config", "PUT", config)
    return name


def status(connect_url: str, name: str) -> dict[str, Any]:
    result = _request(f"{connect_url.rstrip('/')}/connectors/{name}/status")
    return result if isinstance(result, dict) else {}


def failure_trace(st: dict[str, Any]) -> str | None:
    """The first failure of a connector or its tasks, with its Java trace."""
    conn = st.get("connector", {})
    if conn.get("state") == "FAILED":
        return f"connector {st.get('name')} FAILED:\n{conn.get('trace', '(no trace)')}"
    for task in st.get("tasks", []):
        if task.get("state") == "FAILED":
            return f"connector {st.get('name')} task {task.get('id')} FAILED:\n{task.get('trace', '(no trace)')}"
    return None


def wait_running(connect_url: str, name: str, timeout_s: float = 60.0, settle_s: float = 3.0) -> dict[str, Any]:
    """Wait until the connector and all its tasks run and stay running for `settle_s`.

    A task can report RUNNING and fail a moment later (e.g. its first snapshot query is
    refused), so one RUNNING answer is not enough. A failure raises with its task trace.
    """
    deadline = time.monotonic() + timeout_s
    running_since: float | None = None
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = status(connect_url, name)
        except ConnectorError:
            time.sleep(0.5)
            continue
        trace = failure_trace(last)
        if trace:
            raise ConnectorError(trace)
        tasks = last.get("tasks", [])
        if last.get("connector", {}).get("state") == "RUNNING" and tasks and all(
            t.get("state") == "RUNNING" for t in tasks
        ):
            running_since = running_since or time.monotonic()
            if time.monotonic() - running_since >= settle_s:
                return last
        else:
            running_since = None
        time.sleep(0.5)
    raise ConnectorError(f"connector {name} not RUNNING after {timeout_s:.0f}s: {json.dumps(last)}")


def delete(connect_url: str, name: str) -> None:
    try:
        _request(f"{connect_url.rstrip('/')}/connectors/{name}", "DELETE")
    except ConnectorError as exc:
        if "404" not in str(exc):
            raise
