"""Write docs/api.md from the Python API's own signatures and docstrings (cascade/api.py).

    python docs/gen_api.py

Why generated: a page written by hand beside the code drifts from it; this one is the code's
own text, and tests/test_api.py fails while the committed page differs from what this writes.
"""
from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "api.md"


def signature(obj) -> str:
    """`name(params) -> returns` with the annotations as written in the source (unquoted); a
    class as its constructor, without the `-> None` of `__init__`."""
    text = re.sub(r"(: |-> )'([^']*)'", r"\1\2", str(inspect.signature(obj)))
    return obj.__name__ + (text.removesuffix(" -> None") if inspect.isclass(obj) else text)


def page() -> str:
    """The Markdown page: the module's docstring, then each public name of `cascade.api.__all__`
    with its signature and docstring."""
    sys.path.insert(0, str(ROOT))
    from cascade import api

    parts = ["# Python API", "",
             "<!-- Written by docs/gen_api.py from cascade/api.py; edit the docstrings, then run it. -->", "",
             inspect.getdoc(api), ""]
    for name in api.__all__:
        obj = getattr(api, name)
        parts += [f"## cascade.{name}", "", "```python", signature(obj), "```", "", inspect.getdoc(obj), ""]
    return "\n".join(parts)


if __name__ == "__main__":
    PAGE.write_text(page())
    print(f"written {PAGE}")
