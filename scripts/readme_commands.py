"""The shell commands of a README section, as written, so `make pi-check` can follow the README verbatim.

    python scripts/readme_commands.py README.md '### `edgedet export`'        # one command per line
    python scripts/readme_commands.py README.md '## On a Raspberry Pi' --block 2 --files

A section starts at the heading line that begins with the given text and ends at the next heading of the same or
a higher level. The commands are the lines of its N-th fenced code block (1 = the first), with backslash
continuations joined and trailing `# comments` dropped. `--files` prints instead the file names the commands copy
(`scp A B host:`): the artifacts a README section tells the user to take to the Pi.

Standard library only (pi-check runs it with any python3).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import List


def section_lines(text: str, heading: str) -> List[str]:
    """The lines under the first heading line starting with `heading`, up to the next heading of its level or above.
    ValueError when no such heading exists."""
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if line.startswith("#") and line.startswith(heading):
            level = len(line) - len(line.lstrip("#"))
            body = []
            for line in lines[start + 1:]:
                if line.startswith("#") and not line.startswith("#" * (level + 1)):
                    break
                body.append(line)
            return body
    raise ValueError(f"no heading starting with {heading!r}")


def code_blocks(lines: List[str]) -> List[List[str]]:
    """The fenced (```) code blocks among `lines`, each as its list of lines."""
    blocks, current = [], None
    for line in lines:
        if line.strip().startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def commands(block: List[str]) -> List[str]:
    """The block's commands: backslash continuations joined, trailing `# comments` and blank lines dropped."""
    joined, pending = [], ""
    for line in block:
        line = pending + line.strip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        line = _strip_comment(line)
        if line:
            joined.append(line)
    return joined


def _strip_comment(line: str) -> str:
    """The line without a trailing shell comment: from a '#' outside quotes that starts a word."""
    quote, previous = None, " "
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and previous.isspace():
            return line[:index].rstrip()
        previous = char
    return line.rstrip()


def copied_files(command_lines: List[str]) -> List[str]:
    """File arguments of the `scp` commands (every argument but options and the `host:` destination)."""
    files = []
    for line in command_lines:
        words = shlex.split(line)
        if words and words[0] == "scp":
            files += [w for w in words[1:-1] if not w.startswith("-")]
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("readme")
    parser.add_argument("heading", help="the heading line's start, e.g. '### `edgedet export`'")
    parser.add_argument("--block", type=int, default=1, help="which code block of the section (1 = first)")
    parser.add_argument("--files", action="store_true", help="print the files its scp commands copy instead")
    args = parser.parse_args(argv)
    try:
        blocks = code_blocks(section_lines(Path(args.readme).read_text(), args.heading))
        if not 1 <= args.block <= len(blocks):
            raise ValueError(f"section {args.heading!r} has {len(blocks)} code blocks, not {args.block}")
    except (OSError, ValueError) as error:
        print(f"readme_commands: {error}", file=sys.stderr)
        return 2
    found = commands(blocks[args.block - 1])
    print("\n".join(copied_files(found) if args.files else found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
