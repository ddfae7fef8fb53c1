"""Adding a hook entry to a YAML config file as text, so its comments and layout stay as they are."""

from __future__ import annotations

import re

from sidecar.errors import ConfigError

_TOP_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:")
_HOOKS = re.compile(r"^hooks\s*:\s*(?P<flow>\{\s*\})?\s*(?:#.*)?$")


def _yaml_value(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    text = str(value)
    if re.fullmatch(r"[\w./-]+", text) and text.lower() not in ("null", "true", "false", "yes", "no", "on", "off"):
        return text
    return "'" + text.replace("'", "''") + "'"


def add_hook_entry(text: str, name: str, entry: dict[str, object]) -> str:
    """`text` with `hooks.<name>: entry` added at the end of the top-level `hooks:` block
    (which is created when missing). A hooks block in flow style with entries is refused."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("hooks") and _HOOKS.match(line)), None)
    if start is None:
        if any(re.match(r"^hooks\s*:", line) for line in lines):
            raise ConfigError("the config's hooks: block is written in flow style ({...}); add the hook by hand")
        lines += ["", "hooks:"]
        start = len(lines) - 1
    elif _HOOKS.match(lines[start]) and _HOOKS.match(lines[start]).group("flow"):  # type: ignore[union-attr]
        lines[start] = "hooks:"
    end = start + 1
    indent = ""
    last_content = start
    while end < len(lines):
        line = lines[end]
        if line.strip() and not line.lstrip().startswith("#"):
            if _TOP_KEY.match(line):
                break
            if not indent:
                indent = line[: len(line) - len(line.lstrip())]
            last_content = end
        end += 1
    indent = indent or "  "
    block = [f"{indent}{name}:"] + [f"{indent}{indent}{key}: {_yaml_value(value)}" for key, value in entry.items()]
    lines[last_content + 1:last_content + 1] = block
    return "\n".join(lines) + "\n"
