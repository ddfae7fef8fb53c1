"""Adding a hook entry to a config file keeps everything else as written."""

from __future__ import annotations

import pytest
import yaml

from sidecar.config_edit import add_hook_entry
from sidecar.errors import ConfigError

CONFIG = """\
# top comment
pipeline: p
hooks:
  # the first hook
  a: {path: hooks/a.py}
  b:
    path: hooks/b.py   # trailing comment

log: {level: info}
"""


def test_entry_goes_at_the_end_of_the_hooks_block() -> None:
    """The new entry follows the last hook, with the block's indentation; comments stay."""
    out = add_hook_entry(CONFIG, "c", {"path": "hooks/c.py", "ops": ["c", "u"], "where": "amount > 5"})
    doc = yaml.safe_load(out)
    assert list(doc["hooks"]) == ["a", "b", "c"]
    assert doc["hooks"]["c"] == {"path": "hooks/c.py", "ops": ["c", "u"], "where": "amount > 5"}
    assert doc["log"] == {"level": "info"}
    assert "# top comment" in out and "# the first hook" in out and "# trailing comment" in out


@pytest.mark.parametrize("text", ["pipeline: p\n", "pipeline: p\nhooks: {}\n", "pipeline: p\nhooks:\n"])
def test_missing_or_empty_hooks_block(text: str) -> None:
    """No hooks key, `hooks: {}` or an empty `hooks:`: a block is created with the entry."""
    doc = yaml.safe_load(add_hook_entry(text, "c", {"path": "hooks/c.py"}))
    assert doc == {"pipeline": "p", "hooks": {"c": {"path": "hooks/c.py"}}}


def test_flow_style_hooks_with_entries_are_refused() -> None:
    """A one-line `hooks: {a: …}` is not rewritten (it could lose formatting); the user is told."""
    with pytest.raises(ConfigError, match="flow style"):
        add_hook_entry("hooks: {a: {path: a.py}}\n", "c", {"path": "hooks/c.py"})
