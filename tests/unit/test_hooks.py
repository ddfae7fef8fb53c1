"""Hook loading: broken hooks stop start-up with file, line and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.config import HookConfig
from sidecar.errors import HookLoadError
from sidecar.hooks import load_hook, split_target

REPO = Path(__file__).resolve().parents[2]


def hook_file(tmp_path: Path, body: str) -> str:
    p = tmp_path / "h.py"
    p.write_text(body)
    return str(p)


def test_loads_example_hooks() -> None:
    """The shipped example hooks import and have the right signature."""
    for name in ("audit_log", "pipeline_stats", "high_value_notify"):
        spec = load_hook(name, path=str(REPO / "hooks" / f"{name}.py"))
        assert spec.name == name and callable(spec.fn)


def test_missing_file(tmp_path: Path) -> None:
    """A path that does not exist is named."""
    with pytest.raises(HookLoadError, match="does not exist"):
        load_hook("h", path=str(tmp_path / "nope.py"))


def test_missing_function_lists_available(tmp_path: Path) -> None:
    """A missing function is named along with what the file does define."""
    with pytest.raises(HookLoadError, match=r"no function 'checkpoint'.*other"):
        load_hook("h", path=hook_file(tmp_path, "def other(p):\n    pass\n"))


def test_import_error_names_line(tmp_path: Path) -> None:
    """An exception at import names the file and line."""
    path = hook_file(tmp_path, "x = 1\nraise RuntimeError('boom')\n")
    with pytest.raises(HookLoadError, match=r"h\.py:2.*RuntimeError: boom"):
        load_hook("h", path=path)


def test_syntax_error_names_line(tmp_path: Path) -> None:
    """A syntax error names the file and line."""
    with pytest.raises(HookLoadError, match=r"h\.py:3.*SyntaxError"):
        load_hook("h", path=hook_file(tmp_path, "def checkpoint(p):\n    pass\ndef (\n"))


@pytest.mark.parametrize("sig", ["()", "(a, b)", "(*, param)"])
def test_wrong_signature(tmp_path: Path, sig: str) -> None:
    """A function that cannot take one positional param is refused with its line."""
    path = hook_file(tmp_path, f"def checkpoint{sig}:\n    pass\n")
    with pytest.raises(HookLoadError, match=r"h\.py:1 has the wrong signature"):
        load_hook("h", path=path)


def test_path_with_function_suffix(tmp_path: Path) -> None:
    """PATH.py:FUNC picks the function."""
    path = hook_file(tmp_path, "def mine(p):\n    return 1\n")
    assert split_target(f"{path}:mine") == (path, "mine")
    assert load_hook("h", path=f"{path}:mine").fn(None) == 1


def test_filters() -> None:
    """Default ops are c/u/d/r; tables filter when given."""
    path = str(REPO / "hooks" / "audit_log.py")
    spec = load_hook("h", path=path, config=HookConfig(path=path, tables=["public.orders"]))
    assert spec.matches("public.orders", "c") and spec.matches("public.orders", "r")
    assert not spec.matches("public.orders", "t")
    assert not spec.matches("public.other", "c")


def test_async_hooks_are_recognised(tmp_path: Path) -> None:
    """`async def` and an object with `async def __call__` load as async hooks; plain ones do not."""
    path = hook_file(tmp_path, "async def checkpoint(p):\n    pass\n"
                               "class C:\n    async def __call__(self, p):\n        pass\n"
                               "obj = C()\n"
                               "def plain(p):\n    pass\n")
    assert load_hook("a", path=path).is_async
    assert load_hook("b", path=f"{path}:obj").is_async
    assert not load_hook("c", path=f"{path}:plain").is_async


def test_options_from_config(tmp_path: Path) -> None:
    """Every config option reaches the loaded hook."""
    path = hook_file(tmp_path, "def checkpoint(p):\n    pass\n")
    cfg = HookConfig(path=path, ordering="key", concurrency=8, timeout_s=2, on_failure="skip",
                     retry={"max_attempts": 2, "initial_backoff_s": 0.1, "max_backoff_s": 1, "multiplier": 3})
    spec = load_hook("h", path=path, config=cfg)
    assert (spec.ordering, spec.concurrency, spec.timeout_s, spec.on_failure) == ("key", 8, 2, "skip")
    assert (spec.max_attempts, spec.initial_backoff_s, spec.max_backoff_s, spec.multiplier) == (2, 0.1, 1, 3)


def test_hook_from_an_installed_packages_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`entry_point: NAME` loads what a package registers in the checkpoint_sidecar.hooks group."""
    (tmp_path / "acme_hooks.py").write_text("def notify(param):\n    return 'acme'\n")
    dist = tmp_path / "acme_hooks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-hooks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[checkpoint_sidecar.hooks]\nacme_notify = acme_hooks:notify\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = load_hook("notify", entry_point="acme_notify")
    assert spec.fn(None) == "acme"
    assert spec.origin == "acme_hooks:notify"
    with pytest.raises(HookLoadError, match=r"no entry point 'nope' .* \(installed: acme_notify\)"):
        load_hook("x", entry_point="nope")


@pytest.mark.parametrize(("source", "kind"), [
    ("def checkpoint(param):\n    yield param\n", "a generator function"),
    ("async def checkpoint(param):\n    yield param\n", "an async generator function"),
    ("class C:\n    def __call__(self, param):\n        yield param\ncheckpoint = C()\n", "a generator function"),
])
def test_generator_hooks_are_refused_at_load(tmp_path: Path, source: str, kind: str) -> None:
    """A generator (or async generator) hook would be counted ok without its body running: refused."""
    hook = tmp_path / "gen.py"
    hook.write_text(source)
    with pytest.raises(HookLoadError, match=kind):
        load_hook("gen", path=str(hook))


def test_relative_hook_path_prefers_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """hooks/x.py next to the config wins over a same-named file under the working directory."""
    cwd, conf_dir = tmp_path / "app", tmp_path / "config"
    for folder, marker in ((cwd, "image"), (conf_dir, "mounted")):
        (folder / "hooks").mkdir(parents=True)
        (folder / "hooks" / "x.py").write_text(f"WHO = {marker!r}\ndef checkpoint(param):\n    pass\n")
    monkeypatch.chdir(cwd)
    spec = load_hook("x", path="hooks/x.py", base_dir=conf_dir)
    assert spec.fn.__globals__["WHO"] == "mounted"
    only_cwd = load_hook("x", path="hooks/x.py", base_dir=tmp_path / "elsewhere")
    assert only_cwd.fn.__globals__["WHO"] == "image"


def test_an_auxiliary_database_the_config_lacks_is_a_key_error_that_says_which_it_has() -> None:
    """Found by a new-user trial: `hooks new --template stats --database nope` writes a hook that
    reads param.auxiliary_db["nope"]; every call failed with a bare KeyError: 'nope'."""
    from sqlalchemy import create_engine

    from sidecar.testing import make_event, make_param

    engine = create_engine("sqlite://")
    param = make_param(make_event("public.t", after={"id": 1}), auxiliary_db={"audit": engine})
    assert param.auxiliary_db["audit"] is engine and param.auxiliary_db.get("nope") is None
    says = r"no auxiliary database 'nope' in the config \(databases.auxiliary has: audit\)"
    with pytest.raises(KeyError, match=says):
        param.auxiliary_db["nope"]


def test_thread_loop_refuses_an_async_hook_or_a_timeout() -> None:
    """Built in code (sidecar.testing, tests) as from config: an async hook, a timeout or concurrency
    above 1 cannot run on the loop's thread; a plain serial hook can."""
    from sidecar.hooks import HookSpec

    async def coro(param: object) -> None:
        return None

    assert HookSpec("h", print, "t", thread="loop").thread == "loop"
    with pytest.raises(HookLoadError, match=r"hook h \(t\) is async: thread: loop takes plain functions only"):
        HookSpec("h", coro, "t", thread="loop", is_async=True)
    for bad in ({"timeout_s": 1.0}, {"concurrency": 2}):
        with pytest.raises(HookLoadError, match="thread: loop runs one call at a time"):
            HookSpec("h", print, "t", thread="loop", **bad)  # type: ignore[arg-type]
    with pytest.raises(HookLoadError, match="thread must be workers or loop"):
        HookSpec("h", print, "t", thread="main")
