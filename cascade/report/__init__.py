"""Result tables (Markdown, CSV) that say how every number was computed."""
import json
from pathlib import Path


def run_record(folder) -> dict:
    """A results folder's run.json (every command that writes results/<run-id>/ writes one); any
    other path is refused by name, the one message of every command that reads a folder back."""
    meta = Path(folder) / "run.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{folder}: not a results folder (no run.json; expected results/<run-id>/run.json "
                                "as cascade run, compare, ensemble, regress, analyse and explain write it)")
    return json.loads(meta.read_text())
