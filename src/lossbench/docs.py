"""``make docs``: rewrite the README's generated blocks (``<!-- NAME:start -->`` … ``end``)."""

from __future__ import annotations

import re
from pathlib import Path

from lossbench import matrix, stability

BLOCKS = {"matrix": matrix.markdown, "stability": stability.markdown}


def render(text: str) -> str:
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        text = pattern.sub(lambda m, make=make: f"{m.group(1)}{make()}\n{m.group(2)}", text)
    return text


def main(readme: Path = Path("README.md")) -> None:
    readme.write_text(render(readme.read_text()))


if __name__ == "__main__":
    main()
