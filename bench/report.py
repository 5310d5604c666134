"""What every benchmark returns, and the report `make bench` writes (docs/benchmarks.md)."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any


@dataclass
class Section:
    """One benchmark's outcome: a heading, its markdown (tables, a sentence on what it means) and
    its figures by name (kept in docs/benchmarks.json for comparisons between runs)."""

    title: str
    markdown: str
    figures: dict[str, Any] = field(default_factory=dict)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> dict[str, str]:
    """Where the figures were measured: they are comparable only with figures from the same kind."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    versions = {}
    for package in ("django", "celery", "tensorflow-cpu", "keras", "numpy", "psycopg"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "os": platform.platform(),
        "commit": _commit(),
        **versions,
    }


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def report(sections: list[Section], *, command: str, seconds: float) -> str:
    about = machine()
    lines = [
        "# Benchmarks",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `{command}` in {seconds / 60:.1f} minutes "
        f"(commit {about['commit']}). Ratios measured side by side in this one run are the headline: "
        "absolute times drift on shared machines, ratios much less. Rerun with the same command; "
        "`make bench` seeds its own data and needs nothing running.",
        "",
        markdown_table(["machine", ""], [[key, value] for key, value in about.items() if key != "commit"]),
        "",
    ]
    for section in sections:
        lines += [f"## {section.title}", "", section.markdown.strip(), ""]
    return "\n".join(lines)
