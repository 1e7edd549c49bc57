"""Every bad-input case of tests/test_bad_inputs.py, run as the tests run them (in process, each in its own
folder), printed as a table: the case, the command, its exit code and the first line it wrote on stderr. The tests
check each line; this shows them, for a reader.

    python benchmarks/bad_inputs_table.py > bad_inputs.md
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import run_main  # noqa: E402
from tests.test_bad_inputs import CASES, make_env, prepare, release  # noqa: E402


def main() -> None:
    print("| case | command | exit | first stderr line |\n|---|---|---|---|")
    clean = 0
    with tempfile.TemporaryDirectory() as tmp:
        env = make_env(Path(tmp) / "shared")
        for case in CASES:
            w = Path(tmp) / "cases" / case.id
            argv = prepare(case, env, w)
            r = run_main(case.tool, *argv, cwd=w)
            first = (r.stderr.strip().splitlines() or [""])[0].replace("|", "/").replace(tmp, "<tmp>")
            clean += r.returncode == 2 and first.startswith("error: ") and "Traceback" not in r.stderr
            shown = " ".join([case.tool, *case.args])[:80].replace("|", "/")
            print(f"| {case.id} | `{shown}` | {r.returncode} | {first[:160]} |", flush=True)
            if (w / "ro").exists():
                release(w / "ro")
    print(f"\n{clean} of {len(CASES)} cases: exit 2 and one `error:` line")


if __name__ == "__main__":
    main()
