"""Inputs found by a crash and secret hunt on the CLI: each gets one clear line and an exit code,
never a traceback, and never the secret it holds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sidecar import secrets
from sidecar.cli import EXIT_CONFIG, EXIT_DATABASE, main
from sidecar.config import load_settings
from sidecar.connectors import load_connector
from sidecar.errors import ConfigError, ConnectorError
from sidecar.sources.preflight import check_postgres

SECRET = "Zq8QmArkSecret40x"
BASE = "pipeline: p\nsource: {kind: file, file: {path: x.jsonl}}\n"


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("SIDECAR_"):
            monkeypatch.delenv(key)
    secrets.REDACTOR.clear()


def write_hooks(tmp_path: Path, **sources: str) -> None:
    """hooks/NAME.py for each NAME=source."""
    (tmp_path / "hooks").mkdir(exist_ok=True)
    for name, source in sources.items():
        (tmp_path / "hooks" / f"{name}.py").write_text(source)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


@pytest.mark.parametrize(("body", "says"), [
    (f"databases: {{auxiliary: {{audit: *{SECRET}}}}}\n", "found undefined alias …"),
    (f"databases: {{auxiliary: {{audit: !{SECRET} x}}}}\n", "could not determine a constructor for the tag …"),
    (f"databases: {{auxiliary: {{audit: !!bool mysql+pymysql://root:{SECRET}@127.0.0.1/x}}}}\n",
     "cannot be read as the type its tag names"),
    (f"databases: {{auxiliary: {{audit: !!int {SECRET}}}}}\n", "cannot be read as the type its tag names"),
    (f"x: !!timestamp 2026-13-{SECRET}\n", "cannot be read as the type its tag names"),
])
def test_a_yaml_error_never_shows_the_value(tmp_path: Path, body: str, says: str) -> None:
    """PyYAML quotes the alias, tag or scalar it stumbled on; the config error leaves it out."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(BASE + body)
    code, out = run("check", "--config", str(cfg))
    assert code == EXIT_CONFIG, out
    assert says in out and SECRET not in out and SECRET.lower() not in out


def test_a_config_that_is_not_utf8_or_has_odd_top_level_keys_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("pipeline: p\x01\n")  # a control character: a reader error, not a tag's
    with pytest.raises(ConfigError, match=r"is not valid YAML: cannot be parsed \(ReaderError\)"):
        load_settings(cfg)
    cfg.write_bytes(b"pipeline: p\xff\n")
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 12"):
        load_settings(cfg)
    for key in ("1", "null", "2026-01-01"):
        cfg.write_text(BASE + f"{key}: x\n")
        with pytest.raises(ConfigError, match="top-level keys must be names"):
            load_settings(cfg)
    secret = tmp_path / "pw"
    secret.write_bytes(b"\xff\xfe")
    cfg.write_text(BASE + f"databases: {{auxiliary: {{audit: 'file:{secret}'}}}}\n")
    code, out = run("check", "--config", str(cfg))
    assert code == EXIT_CONFIG and "is not UTF-8 text" in out, out


def test_a_connector_file_that_is_not_utf8_is_a_connector_error(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(b'{"name": "x\xff", "config": {}}')
    with pytest.raises(ConnectorError, match="not UTF-8 text"):
        load_connector(path, {})


@pytest.mark.parametrize("port", ["54x32", "tcp://10.0.0.3:5432", "0", "70000", "", "²", "5432 "])
def test_a_preflight_port_that_is_not_a_number_is_a_config_error(port: str) -> None:
    with pytest.raises(ConfigError, match=r"database\.port must be a port number"):
        check_postgres({"database.hostname": "127.0.0.1", "database.port": port}, timeout_s=1)


@pytest.mark.parametrize("days", ["-1", "0", "1e-9", "0.04", "nan", "inf", "-inf"])
def test_ledger_prune_refuses_an_age_that_would_remove_fresh_claims(tmp_path: Path, days: str) -> None:
    """Under an hour (0.0417 days), 0, negative or not finite: refused before any database is touched."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(BASE + f"databases: {{auxiliary: {{audit: 'sqlite:///{tmp_path}/a.db'}}}}\n")
    code, out = run("ledger", "prune", "--config", str(cfg), "--older-than-days", days)
    assert code == 2 and "must be a number of days of at least 0.042 (one hour)" in out, out


@pytest.mark.parametrize("command", [["create"], ["prune", "--older-than-days", "3"]])
def test_a_ledger_command_reports_a_database_error_in_one_line(tmp_path: Path, command: list[str]) -> None:
    """sqlite is not a ledger database, and a path that cannot be opened fails to connect: exit 4."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(BASE + f"databases: {{auxiliary: {{audit: 'sqlite:///{tmp_path}/no/such/dir/a.db'}}}}\n")
    code, out = run("ledger", *command, "--config", str(cfg))
    assert code == EXIT_DATABASE, out
    assert out.startswith("checkpoint-sidecar: auxiliary database audit (sqlite:///") and "Traceback" not in out


@pytest.mark.parametrize("timeout", ["-1", "0", "601"])
def test_check_refuses_a_timeout_that_would_wait_forever_or_not_at_all(tmp_path: Path, timeout: str) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(BASE)
    code, out = run("check", "--config", str(cfg), "--timeout", timeout)
    assert code == 2 and "--timeout" in out, out


def test_hooks_list_and_test_mask_secrets_in_hook_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hook's error holding a secret (an env token, the database password) is masked in
    `hooks test` and in `hooks list`'s import column, as in `check` and the logs."""
    monkeypatch.setenv("NOTIFY_API_TOKEN", "tok-7H3xQ9wLmP2s")
    write_hooks(
        tmp_path,
        leaky="import os\n"
              "def checkpoint(param):\n"
              "    url = param.auxiliary_db['audit'].url.render_as_string(hide_password=False)\n"
              "    raise ConnectionError(f\"GET ?token={os.environ['NOTIFY_API_TOKEN']} on {url} failed\")\n",
        broken="import os\nraise ImportError(f\"token={os.environ['NOTIFY_API_TOKEN']}\")\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(BASE + f"databases: {{auxiliary: {{audit: 'mysql+pymysql://u:{SECRET}%21@127.0.0.1:9/x'}}}}\n"
                   "hooks:\n  leaky: {path: hooks/leaky.py}\n")
    code, out = run("hooks", "test", "leaky", "--config", str(cfg))
    assert code == 1 and "FAILED ConnectionError" in out, out
    assert "tok-7H3xQ9wLmP2s" not in out and SECRET not in out
    with open(cfg, "a") as f:
        f.write("  broken: {path: hooks/broken.py}\n")
    code, out = run("hooks", "list", "--config", str(cfg))
    assert code == 3 and "FAILED" in out, out
    assert "tok-7H3xQ9wLmP2s" not in out


def test_hooks_test_bounds_each_call_and_survives_sys_exit(tmp_path: Path) -> None:
    """A call that does not finish within the hook's timeout_s (or --timeout) is given up on with
    ctx.cancelled set, and a hook calling sys.exit fails its call: the command goes on to the end."""
    write_hooks(
        tmp_path,
        slow="def checkpoint(param):\n    param.ctx.cancelled.wait(30)\n",  # ends once given up on
        quits="import sys\ndef checkpoint(param):\n    sys.exit(0)\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(BASE + "hooks:\n  slow: {path: hooks/slow.py, timeout_s: 0.2, tables: [public.orders], ops: [c]}\n"
                   "  quits: {path: hooks/quits.py}\n")
    code, out = run("hooks", "test", "slow", "--config", str(cfg))
    assert code == 1, out
    assert "FAILED: the call did not finish within 0.2 s" in out and "calls: 0 ok" in out, out
    code, out = run("hooks", "test", "quits", "--config", str(cfg), "--timeout", "5")
    assert code == 1 and "FAILED SystemExit: the hook called sys.exit(0)" in out and "calls: 0 ok" in out, out


def test_hooks_test_bounds_a_thread_loop_hook_too(tmp_path: Path) -> None:
    """A hook set to `thread: loop` (which has no timeout_s in a run) is tested like any other:
    each call bounded by --timeout, given up on past it; `hooks list` shows the setting."""
    write_hooks(tmp_path, slow="def checkpoint(param):\n    param.ctx.cancelled.wait(30)\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(BASE + "hooks:\n  slow: {path: hooks/slow.py, thread: loop, tables: [public.orders], ops: [c]}\n")
    code, out = run("hooks", "test", "slow", "--config", str(cfg), "--timeout", "0.2")
    assert code == 1, out
    assert "FAILED: the call did not finish within 0.2 s" in out and "calls: 0 ok" in out, out
    code, out = run("hooks", "list", "--config", str(cfg))
    assert code == 0 and "partition (1, thread loop)" in out, out


@pytest.mark.parametrize(("command", "says"), [
    (["check"], "database auxiliary.audit ({url}) did not answer within 1 s"),
    (["ledger", "create"], "auxiliary database audit ({url}) did not answer within 1 s"),
    (["ledger", "prune", "--older-than-days", "7"], "auxiliary database audit ({url}) did not answer within 1 s"),
])
def test_commands_give_up_on_a_database_that_never_answers(tmp_path: Path, command: list[str], says: str) -> None:
    """A listener that takes connections and never speaks: `check`, `ledger create` and `ledger
    prune` with `--timeout 1` are exit 4 in about a second, naming the database with its password
    masked (not a hang until the driver's own timeout, or forever)."""
    import socket
    import time

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        cfg = tmp_path / "config.yaml"
        cfg.write_text(BASE + f"databases: {{auxiliary: {{audit: 'mysql+pymysql://u:{SECRET}@127.0.0.1:{port}/x'}}}}\n")
        started = time.monotonic()
        code, out = run(*command, "--config", str(cfg), "--timeout", "1")
        took = time.monotonic() - started
    assert code == EXIT_DATABASE, out
    assert says.format(url=f"mysql+pymysql://u:***@127.0.0.1:{port}/x") in out, out
    assert took < 8 and SECRET not in out


def test_hooks_new_refuses_odd_names_and_leaves_nothing_behind_when_a_write_fails(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(BASE)
    for args, says in ((["x" * 300], "use up to 64 lowercase letters"),
                       (["audit2", "--template", "audit", "--database", 'a"b'], "--database 'a\"b'"),
                       (["audit2", "--table", "public.a\nb"], "--table 'public.a\\nb'")):
        code, out = run("hooks", "new", *args, "--config", str(cfg))
        assert code == EXIT_CONFIG and says in out, out
    (tmp_path / "tests").write_text("a file where the tests folder would go\n")
    code, out = run("hooks", "new", "audit2", "--config", str(cfg))
    assert code == EXIT_CONFIG and "cannot write" in out and "nothing was left written" in out, out
    assert not (tmp_path / "hooks" / "audit2.py").exists() and cfg.read_text() == BASE
    assert not (tmp_path / "hooks").exists()  # the folder it made is gone too
    (tmp_path / "tests").unlink()
    code, out = run("hooks", "new", "audit2", "--config", str(cfg))
    assert code == 0 and "added hooks.audit2" in out, out


def test_hooks_new_never_leaves_a_truncated_config_and_keeps_its_line_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The config is replaced whole or not at all: a write that fails (disk full) leaves it as it
    was (before, it was rewritten in place, and a failed write truncated it). A config with
    CRLF line ends keeps them; its permissions stay."""
    import errno

    import sidecar.hook_cli

    crlf = BASE.replace("\n", "\r\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_bytes(crlf.encode())
    cfg.chmod(0o640)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(sidecar.hook_cli.os, "fsync", full)
        code, out = run("hooks", "new", "audit2", "--config", str(cfg))
    assert code == EXIT_CONFIG and "No space left on device" in out and "nothing was left written" in out, out
    assert cfg.read_bytes() == crlf.encode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # no hook, test, folder or temp file
    code, out = run("hooks", "new", "audit2", "--config", str(cfg))
    assert code == 0, out
    text = cfg.read_bytes().decode()
    assert text.startswith(crlf) and "audit2" in text and "\n" not in text.replace("\r\n", "")
    assert cfg.stat().st_mode & 0o777 == 0o640


def test_ledger_commands_do_not_load_hooks(tmp_path: Path) -> None:
    """A hook that does not import has nothing to do with the ledger table: the command reaches
    the database (here: sqlite, which it refuses, exit 4), not exit 3."""
    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(BASE + f"databases: {{auxiliary: {{audit: 'sqlite:///{tmp_path}/a.db'}}}}\n"
                   "hooks:\n  broken: {path: broken.py}\n")
    code, out = run("ledger", "create", "--config", str(cfg))
    assert code == EXIT_DATABASE and "supports MariaDB/MySQL and PostgreSQL, not sqlite" in out, out
    code, out = run("ledger", "create", "--config", str(cfg), "--database", "other")
    assert code == EXIT_CONFIG and "no auxiliary database 'other'" in out, out


def test_hooks_test_gives_each_call_its_own_cancel_flag_and_masks_what_the_hook_raises(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: giving up on a call of a hook without timeout_s set the flag every such
    call shares, so each later call started cancelled; a TimeoutError or sys.exit the hook raised
    itself was printed unmasked (and the first looked like hooks test giving up)."""
    from sidecar.param import NOT_CANCELLED

    monkeypatch.setenv("NOTIFY_API_TOKEN", "tok-7H3xQ9wLmP2s")
    write_hooks(
        tmp_path,
        first_slow="CALLS = []\n"
                   "def checkpoint(param):\n"
                   "    CALLS.append(1)\n"
                   "    if param.ctx.cancelled.is_set():\n"
                   "        raise RuntimeError('started cancelled')\n"
                   "    if len(CALLS) == 1:\n"
                   "        param.ctx.cancelled.wait(30)\n",
        raises="import os, sys\n"
               "def checkpoint(param):\n"
               "    if param.record.get('id') == 1:\n"
               "        raise TimeoutError(f\"GET ?token={os.environ['NOTIFY_API_TOKEN']} timed out\")\n"
               "    sys.exit(f\"token={os.environ['NOTIFY_API_TOKEN']}\")\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(BASE + "hooks:\n  first_slow: {path: hooks/first_slow.py, tables: [public.orders]}\n"
                   "  raises: {path: hooks/raises.py, tables: [public.orders]}\n")
    code, out = run("hooks", "test", "first_slow", "--config", str(cfg), "--timeout", "0.3")
    assert "FAILED: the call did not finish within 0.3 s" in out and "started cancelled" not in out, out
    assert out.count("  ok ") >= 5 and not NOT_CANCELLED.is_set()
    code, out = run("hooks", "test", "raises", "--config", str(cfg))
    assert code == 1 and "FAILED TimeoutError: GET ?token=*** timed out" in out, out
    assert "FAILED SystemExit: the hook called sys.exit('token=***')" in out and "tok-7H3xQ9wLmP2s" not in out


def test_replay_without_a_config_masks_secret_named_environment_variables(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by a new-user trial: only a loaded config registered them, so `replay FILE --hook`
    printed a token a hook's error carried."""
    monkeypatch.setenv("MY_API_TOKEN", "abcdefgh123xyz")
    write_hooks(tmp_path, leaky="import os\ndef checkpoint(param):\n"
                                "    raise RuntimeError('auth failed with token ' + os.environ['MY_API_TOKEN'])\n")
    data = Path(__file__).resolve().parents[2] / "sidecar" / "examples" / "changes.jsonl"
    code, out = run("replay", str(data), "--hook", str(tmp_path / "hooks" / "leaky.py"))
    assert code != 0 and "auth failed with token" in out and "abcdefgh123xyz" not in out, out


@pytest.mark.parametrize("command", [["check"], ["hooks", "test", "x"], ["replay", "{data}"]])
def test_a_timeout_of_nan_is_refused(tmp_path: Path, command: list[str]) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(BASE)
    (tmp_path / "x.jsonl").write_text("")
    args = [a.format(data=tmp_path / "x.jsonl") for a in command]
    code, out = run(*args, "--config", str(cfg), "--timeout", "nan")
    assert code == 2 and "must be a number of seconds, not nan" in out, out


@pytest.mark.parametrize("attempts", ["0", "-1"])
def test_replay_refuses_attempts_below_one(tmp_path: Path, attempts: str) -> None:
    """`replay --attempts 0` ran every call once as if nothing was asked; now it says what is allowed."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(BASE)
    (tmp_path / "x.jsonl").write_text("")
    code, out = run("replay", str(tmp_path / "x.jsonl"), "--config", str(cfg), "--attempts", attempts)
    assert code == 2 and "--attempts" in out and "x>=1" in out, out


def test_hooks_new_keeps_the_config_owner_and_writes_in_place_where_the_folder_takes_no_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: the renamed-over file belonged to whoever ran the command (a root run
    took a user's config from them), and a folder without write access (a single-file mount)
    made the command fail where writing in place worked before."""
    import errno
    import os

    import sidecar.hook_cli

    cfg = tmp_path / "config.yaml"
    cfg.write_text(BASE)
    owner = 65534 if os.geteuid() == 0 else os.geteuid()  # nobody, when this may give files away
    os.chown(cfg, owner, owner if os.geteuid() == 0 else os.getegid())
    code, out = run("hooks", "new", "audit2", "--config", str(cfg))
    assert code == 0, out
    assert cfg.stat().st_uid == owner and "audit2" in cfg.read_text()

    def no_new_file(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(sidecar.hook_cli.tempfile, "mkstemp", no_new_file)
    inode = cfg.stat().st_ino
    code, out = run("hooks", "new", "audit3", "--config", str(cfg))
    assert code == 0, out
    assert cfg.stat().st_ino == inode and "audit3" in cfg.read_text() and "audit2" in cfg.read_text()


def test_hooks_new_in_place_puts_the_config_back_when_the_write_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by a new-user trial: where the folder takes no new file the config is written in
    place, and a write that failed part-way (file size limit, disk full) left it cut off while the
    command said nothing was left written. Its previous text is now written back."""
    import errno

    import sidecar.hook_cli

    cfg = tmp_path / "config.yaml"
    cfg.write_text(BASE)
    real_fsync = sidecar.hook_cli.os.fsync
    failed: list[int] = []

    def no_new_file(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    def full_once(fd: int) -> None:
        if not failed:
            failed.append(fd)
            raise OSError(errno.EFBIG, "File too large")
        real_fsync(fd)

    monkeypatch.setattr(sidecar.hook_cli.tempfile, "mkstemp", no_new_file)
    monkeypatch.setattr(sidecar.hook_cli.os, "fsync", full_once)
    code, out = run("hooks", "new", "audit2", "--config", str(cfg))
    assert failed and code == EXIT_CONFIG and "File too large" in out and "nothing was left written" in out, out
    assert cfg.read_text() == BASE and sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_hooks_new_in_place_keeps_the_old_text_when_putting_it_back_fails_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: when writing the previous text back failed as well, that error hid the
    first and the message still said nothing was left written. The text is saved and named."""
    import errno
    import re

    import sidecar.hook_cli

    cfg = tmp_path / "config.yaml"
    cfg.write_text(BASE)
    real_mkstemp = sidecar.hook_cli.tempfile.mkstemp

    def no_file_beside(*args: Any, **kwargs: Any) -> Any:
        if "dir" in kwargs:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_mkstemp(*args, **kwargs)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sidecar.hook_cli.tempfile, "mkstemp", no_file_beside)
    monkeypatch.setattr(sidecar.hook_cli.os, "fsync", full)
    code, out = run("hooks", "new", "audit2", "--config", str(cfg))
    assert code == EXIT_CONFIG and "putting its previous text back failed too" in out, out
    assert "nothing was left written" not in out
    saved = re.search(r"it is saved in (\S+);", out)
    assert saved and Path(saved.group(1)).read_text() == BASE
    Path(saved.group(1)).unlink()


def test_check_reports_a_refused_database_in_one_line(tmp_path: Path) -> None:
    """Found by a new-user trial: a database that refuses (nothing listens, a wrong password) was
    reported over several lines, the driver's 'Background on this error' link included."""
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # closed again below: nothing listens there
    cfg = tmp_path / "config.yaml"
    cfg.write_text(BASE + f"databases: {{auxiliary: {{audit: 'mysql+pymysql://u:{SECRET}@127.0.0.1:{port}/x'}}}}\n")
    code, out = run("check", "--config", str(cfg), "--timeout", "5")
    assert code == EXIT_DATABASE, out
    line = next(ln for ln in out.splitlines() if "auxiliary.audit" in ln)
    assert f"database auxiliary.audit (mysql+pymysql://u:***@127.0.0.1:{port}/x) is unreachable or refused" in line
    assert "Connection refused" in line and "sqlalche.me" not in out and SECRET not in out
