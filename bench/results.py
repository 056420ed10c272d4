"""bench/RESULTS.md: each benchmark owns one `## ` section and replaces only that one."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(heading: str, section: str, path: Path = RESULTS) -> None:
    """Replace the section that starts with `heading` (or append it), leaving the others as they are."""
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    if heading in text:
        before, _, rest = text.partition(heading)
        after = rest[rest.find("\n## ") + 1 :] if "\n## " in rest else ""
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
    print(f"written to {path}")
