"""Fail CI when a tier ran fewer tests than it should, or an integration/fault test was skipped."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import Counter

# Minimum number of tests each tier must have run (raise when adding tests, never lower quietly).
MINIMUM = {"unit": 378, "pipeline": 213, "integration": 67, "faults": 15}
NO_SKIPS = {"integration", "faults"}


def main(paths: list[str]) -> int:
    ran: Counter[str] = Counter()
    skipped: list[str] = []
    for path in paths:
        for case in ET.parse(path).iter("testcase"):
            parts = (case.get("classname") or "").split(".")
            tier = parts[1] if len(parts) > 1 and parts[0] == "tests" else "other"
            ran[tier] += 1
            if tier in NO_SKIPS and case.find("skipped") is not None:
                skipped.append(f"{case.get('classname')}::{case.get('name')}")
    problems = [f"tier {t}: ran {ran[t]} tests, expected at least {n}" for t, n in MINIMUM.items() if ran[t] < n]
    problems += [f"skipped or xfailed (not allowed in CI): {s}" for s in skipped]
    for tier in sorted(ran):
        print(f"ci: {tier}: {ran[tier]} tests")
    for p in problems:
        print(f"ci: FAIL {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
