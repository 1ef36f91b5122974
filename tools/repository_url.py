"""The repository's address: one line of pyproject.toml, carried to the README.

``[project.urls] Source`` in ``pyproject.toml`` is the one place where the
repository's address is decided; the other project URLs and every README link
to a file of the repository are that address plus a path, because the package
index shows the README without the repository around it (relative links break
there). ``tests/test_packaging.py`` checks that they all agree with ``Source``
and that each names a file or folder that exists.

The address is a placeholder until the repository is published
(``docs/decisions.md``). To publish it, change it in one command::

    python tools/repository_url.py https://github.com/OWNER/NAME

which rewrites the ``Source`` line and, from the old address, the other
project URLs and the README's links. Without an argument it prints the
address in force.
"""

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The files that carry the address: the metadata and the index page's text.
FILES = ("pyproject.toml", "README.md")

_SOURCE = re.compile(r'^Source = "([^"]+)"$', re.M)
_ADDRESS = re.compile(r"https://[A-Za-z0-9.-]+(/[A-Za-z0-9._-]+)+")


def source_url(root: Path = ROOT) -> str:
    """The address in force: ``[project.urls] Source`` of ``root/pyproject.toml``."""
    found = _SOURCE.search((root / "pyproject.toml").read_text(encoding="utf-8"))
    if found is None:
        raise SystemExit('pyproject.toml has no `Source = "..."` line in [project.urls]')
    return found.group(1)


def set_source_url(new: str, root: Path = ROOT) -> list[str]:
    """Replace the address in force by ``new`` in :data:`FILES`; the files changed."""
    if _ADDRESS.fullmatch(new) is None:
        raise SystemExit(f"{new!r} is not an https:// address without a trailing slash")
    old = source_url(root)
    # The old address as a whole: followed by a path, a quote, a bracket or an anchor.
    pattern = re.compile(re.escape(old) + r'(?=[/")#\s]|$)', re.M)
    changed = []
    for name in FILES:
        path = root / name
        text = path.read_text(encoding="utf-8")
        replaced = pattern.sub(new, text)
        if replaced != text:
            path.write_text(replaced, encoding="utf-8")
            changed.append(name)
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", nargs="?", help="the new address, https://github.com/OWNER/NAME")
    args = parser.parse_args()
    if args.url is None:
        print(source_url())
        return 0
    old = source_url()
    changed = set_source_url(args.url)
    print(f"{old} -> {args.url}: {', '.join(changed) or 'nothing to change'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
