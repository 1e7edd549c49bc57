"""Do the README's commands run, in order, from a fresh clone? Clones this repository's HEAD into a temporary
folder (with ../shared beside it when there is one, as in a checkout), then runs every command of the README's
bash blocks there, in order, and prints one row per command: its exit code, time and last line of output.

Skipped, and said so: lines whose comment says `(GPU)`, the install steps (`pip install ...`: this environment is
already installed from the same files; `--install` makes a fresh virtual environment in the clone instead, which
takes minutes), and the test suite (`--tests` runs it too).

    python benchmarks/readme_in_order.py
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands(readme: str) -> list[str]:
    """Each command of the README's ```bash blocks, in order: continuation lines joined, comments kept."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", readme, re.S):
        line = ""
        for raw in block.splitlines():
            line += raw.rstrip()
            if line.endswith("\\"):
                line = line[:-1] + " "
                continue
            if line.strip() and not line.lstrip().startswith("#"):
                out.append(line.strip())
            line = ""
    return out


def without_install(command: str) -> str:
    """The command with its `pip install ...` steps (joined by &&) left out: this environment has them."""
    return " && ".join(p.strip() for p in command.split("&&") if not p.strip().startswith("pip install"))


def skipped(command: str, tests: bool) -> str | None:
    if "(GPU)" in command:
        return "needs a GPU"
    if not command:
        return "installed already (--install to redo it in the clone)"
    if "pytest" in command and not tests:
        return "the test suite (--tests to run it)"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--install", action="store_true", help="run the install line in a fresh venv in the clone")
    ap.add_argument("--tests", action="store_true", help="also run the README's test command")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "messplus"
        subprocess.run(["git", "clone", "-q", "--local", str(ROOT), str(clone)], check=True)
        if (ROOT.parent / "shared").is_dir():
            (Path(tmp) / "shared").symlink_to(ROOT.parent / "shared")
        env_bin = Path(sys.executable).parent
        if args.install:
            subprocess.run([sys.executable, "-m", "venv", str(clone / ".venv")], check=True)
            env_bin = clone / ".venv" / "bin"
        path = f"{env_bin}:/usr/bin:/bin"
        print("| # | command | exit | seconds | last line |\n|---|---|---|---|---|")
        failed = 0
        for i, given in enumerate(commands((clone / "README.md").read_text()), 1):
            cmd = given if args.install else without_install(given)
            why = skipped(cmd, args.tests)
            shown = given if len(given) < 90 else given[:87] + "..."
            if cmd != given and not why:
                shown += " (its pip install left out: installed already)"
            if why:
                print(f"| {i} | `{shown}` | skipped | | {why} |", flush=True)
                continue
            t0 = time.perf_counter()
            r = subprocess.run(
                ["bash", "-c", cmd], cwd=clone, capture_output=True, text=True, env=os.environ | {"PATH": path}
            )
            lines = [x for x in (r.stdout + r.stderr).strip().splitlines() if x.strip()]
            last = (lines[-1] if lines else "").replace("|", "/")[:100]
            failed += r.returncode != 0
            print(f"| {i} | `{shown}` | {r.returncode} | {time.perf_counter() - t0:.1f} | {last} |", flush=True)
        print(f"\n{failed} command(s) failed")
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
