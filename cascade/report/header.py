"""The provenance lines of every table's header (run, regression, ensemble, comparison, analysis).

Why one place: a number without its target and protocol, its data's origin, its backbone and
weight source, and each dataset's cleaning counts cannot be compared with anything, and a number
from the synthetic demo suite must never pass for a real result; each of those lines is worded
here once, so every table says them alike and `cascade html` can read them back alike.
"""
from __future__ import annotations


def opening(cfg: dict, protocol: str, scope: str, tables: dict, weights: str | None = None) -> list[str]:
    """The lines a table's header opens with: its target and protocol (`scope` goes on the same
    line: the folds, the images, what is compared), where its data came from (`tables`: the
    dataset tables by name), and with `weights` (the root node's) its backbone and weights."""
    lines = [f"Target: {cfg['target']} — protocol `{protocol}`{scope}",
             data_line({name: t.synthetic for name, t in tables.items()})]
    return lines + ([backbone_line(cfg, weights)] if weights is not None else [])


def backbone_line(cfg: dict, weights: str) -> str:
    return f"Backbone: {cfg['backbone']}; weights: {weights} (weights={cfg['weights']})"


def data_line(synthetic: bool | dict[str, bool]) -> str:
    """The header line that says where the data came from: a number from the demo suite must
    never pass for a real result.  `synthetic`: one flag for all the data, or one per dataset
    (a run that mixes the two names which is which)."""
    flags = synthetic if isinstance(synthetic, dict) else {"": synthetic}
    if all(flags.values()):
        return "Data: **synthetic data** (the embedded procedurally generated demo suite; not a real result)"
    if not any(flags.values()):
        return "Data: user-supplied datasets (data.root.*)"
    return ("Data: **mixed real and synthetic**: " + sources_text(flags)
            + "; a configuration trained or tested on synthetic data is not a real result")


def sources_text(synthetic: dict[str, bool]) -> str:
    """Which datasets are the user's and which the demo suite's, in the run's order."""
    real = [n for n, s in synthetic.items() if not s]
    fake = [n for n, s in synthetic.items() if s]
    return f"{', '.join(real)} real (data.root.*); {', '.join(fake)} **synthetic** (the embedded demo suite)"


def cleaning_line(name: str, table, manifest: str | None = None, settings: dict | None = None) -> str:
    """The header line of one dataset: its rows read and used, every cleaning rule's count, and
    the settings its loader ran with (e.g. Adience's label policy and release)."""
    steps = "; ".join(f"{r} −{n}" for r, n in table.report.steps) or "no rows dropped"
    at = f" (manifest {manifest[:12]})" if manifest else ""
    how = " [" + ", ".join(f"{k} {'-'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                           for k, v in settings.items()) + "]" if settings else ""
    return f"Dataset {name}{at}{how}: {table.report.n_raw} rows → {table.report.n_kept} used ({steps})"
