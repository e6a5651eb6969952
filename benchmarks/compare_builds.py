"""Before/after a change: the same gateway benchmarks with two builds, alternating, in one run.

Each build is a checkout with its own ``.venv`` (``bash scripts/setup-env.sh`` in it); each
benchmark script is run from its own checkout with its own interpreter, so "before" measures the
old code with the old benchmark and "after" the new one.  The runs alternate (before, after,
before, after, ...) so that a machine that gets busier or quieter during the run shifts both
columns alike.  Every script measures Dovecot directly in the same run as well (its ``RESULT``
lines); this prints, per result line, the median gateway figure of each build, the after/before
ratio, and the median gateway/direct ratio of each build.

Run: ``.venv/bin/python benchmarks/compare_builds.py --before ../before --after . [--rounds 2]
[--quick] [SCRIPT ...]`` (default scripts: flags, envelope, idle, mixed, memory).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

DEFAULT = [
    "gateway_flags.py", "gateway_envelope.py", "gateway_idle.py", "gateway_mixed.py", "gateway_memory.py",
]
_RESULT = re.compile(
    r"^RESULT (?P<name>.+?): gateway (?P<gw>[0-9.e+-]+) (?P<unit>\S+), direct (?P<dc>[0-9.e+-]+) \S+, "
    r"ratio (?P<ratio>[0-9.inf]+)"
)


def run(build: Path, script: str, quick: bool) -> list[tuple[str, float, float, str]]:
    """The RESULT lines of one benchmark script of one build: (name, gateway, direct, unit)."""
    cmd = [str(build / ".venv" / "bin" / "python"), str(build / "benchmarks" / script)]
    if quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, cwd=build, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise SystemExit(f"{build.name}/{script} failed ({proc.returncode}):\n{tail}")
    out = []
    for line in proc.stdout.splitlines():
        m = _RESULT.match(line)
        if m:
            out.append((m["name"], float(m["gw"]), float(m["dc"]), m["unit"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="checkout of the build before the change")
    ap.add_argument("--after", type=Path, required=True, help="checkout of the build after it")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each script per build, alternating")
    ap.add_argument("--quick", action="store_true", help="pass --quick to every script")
    ap.add_argument("scripts", nargs="*", default=DEFAULT)
    args = ap.parse_args()
    builds = {"before": args.before.resolve(), "after": args.after.resolve()}
    print("builds:", *(f"{k} = {v} ({_head(v)})" for k, v in builds.items()), sep="\n  ")
    for script in args.scripts:
        got: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
        units: dict[str, str] = {}
        for r in range(args.rounds):
            for label, build in builds.items():
                for name, gw, dc, unit in run(build, script, args.quick):
                    got[name][label].append((gw, dc))
                    units[name] = unit
                print(f"  {script} round {r + 1} {label}: done", file=sys.stderr, flush=True)
        print(f"\n{script}")
        for name, by in got.items():
            if not by["before"] or not by["after"]:
                continue
            b = statistics.median(g for g, _ in by["before"])
            a = statistics.median(g for g, _ in by["after"])
            rb = statistics.median(g / d for g, d in by["before"] if d)
            ra = statistics.median(g / d for g, d in by["after"] if d)
            unit = units[name]
            runs = f"{len(by['before'])}+{len(by['after'])}"
            print(
                f"  {name}: before {b:.4g} {unit}, after {a:.4g} {unit}, after/before {a / b:.2f}; "
                f"gateway/direct before {rb:.2f}, after {ra:.2f} (runs {runs})",
                flush=True,
            )


def _head(build: Path) -> str:
    proc = subprocess.run(
        ["git", "-C", str(build), "log", "-1", "--format=%h"], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() or "?"


if __name__ == "__main__":
    main()
