"""`python -m bench [--quick] [--only inference,pipeline,pages]`: every benchmark in one run,
written to docs/benchmarks.md (and the figures to docs/benchmarks.json)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("inference", "pipeline", "pages")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke run, not figures to publish"
    )
    parser.add_argument(
        "--only", default=",".join(PARTS), help="a comma-separated subset of " + ", ".join(PARTS)
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    parts = [part for part in args.only.split(",") if part]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s): {', '.join(unknown)}")

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lungportal.settings")
    import django

    django.setup()
    from importlib import import_module

    from django.core.management import call_command

    call_command("migrate", verbosity=0)  # the shipped model version is registered by a migration

    from bench.report import report

    started = time.monotonic()
    sections = []
    for part in parts:
        print(f"== {part}", flush=True)
        begun = time.monotonic()
        section = import_module(f"bench.{part}").run(quick=args.quick)
        print(f"   {time.monotonic() - begun:.0f} s", flush=True)
        sections.append(section)
    command = (
        "make bench"
        if not args.quick and args.only == ",".join(PARTS)
        else "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    )
    text = report(sections, command=command, seconds=time.monotonic() - started)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    figures = {section.title: section.figures for section in sections}
    args.output.with_suffix(".json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
