"""The analyses of thesis section 6: class activation maps (`cam`), hard subjects and the label
distribution (`subjects`), the 3-group Adience experiment (`groups`), the datasets' age
distributions (`distributions`).  Each answers one of the section's questions with one command
(`cascade explain cam`, `cascade analyse subjects|groups|distributions`) on any backbone, stage
and dataset, writing its tables and figures to `results/<run-id>/` (`common.write_outputs`)."""

#: Results-folder prefixes of the analyses and the (module, entry) that makes each.
ANALYSES = {"cam": ("cam", "explain"), "subjects": ("subjects", "analyse"), "groups": ("groups", "analyse"),
            "distributions": ("distributions", "analyse")}


def analysis_of(folder_name: str, meta: dict) -> tuple[str, str] | None:
    """The (module, entry) that wrote a results folder, None for one no analysis wrote: its name
    starts with the analysis's prefix and its run.json has a title (a `cascade run` named
    `run.name=subjects` has none)."""
    analysis = ANALYSES.get(folder_name.split("-", 1)[0])
    return analysis if analysis and "title" in meta else None
