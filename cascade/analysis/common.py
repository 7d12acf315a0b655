"""What every analysis shares: the plan it reads (the full cascade only), the header that says
what the numbers come from, and the results folder it writes (Markdown + CSV + run.json).

Why one place: an analysis table must carry the same provenance as a run table (data, synthetic
marker, backbone, weights, seed, stage keys), and its folder name must change whenever its inputs
do, so two analyses of different settings never overwrite each other.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd

from cascade import runtime
from cascade.report.header import backbone_line, data_line
from cascade.report.tables import to_markdown
from cascade.stages import plan as P
from cascade.store import atomic_write_json, atomic_write_text, stable_hash


def full_plan(cfg: dict) -> P.Plan:
    """The plan of the full cascade only (`run.prefixes=false`): the analyses look at the model
    the study ends with, not at every prefix."""
    cfg = copy.deepcopy(cfg)
    cfg["run"]["prefixes"] = False
    return P.build(cfg)


def synthetic(plan: P.Plan) -> bool:
    return any(t.synthetic for t in plan.tables.values())


def header(plan: P.Plan, nodes: list[P.Node]) -> list[str]:
    cfg = plan.cfg
    return [
        data_line({name: t.synthetic for name, t in plan.tables.items()}),
        f"{backbone_line(cfg, plan.nodes[0].info['weights'])}; seed {cfg['seed']}",
        *(f"Stage {n.key}: {n.label}" + (f" (protocol `{n.info['protocol']['name']}`)" if n.kind == "target" else "")
          for n in nodes),
    ]


def run_id(kind: str, cfg: dict, inputs) -> str:
    """`<kind>-<target>-<backbone>-<hash of the inputs>` (stage keys and the analysis settings)."""
    return f"{kind}-{cfg['target']}-{cfg['backbone'].replace(':', '-')}-{stable_hash(inputs, 8)}"


def write_outputs(folder: Path, title: str, head: list[str], tables: dict[str, pd.DataFrame],
                  settings: list[str], figures: list[Path], notes: list[str] = (), *, cfg: dict) -> str:
    """`<folder>/<name>.csv` per table, one `<folder>/README.md` with all of them under `head`,
    and `run.json` (settings, header, files, the environment fingerprint).  Returns the Markdown."""
    parts = [f"# {title}", "", *(f"- {h}" for h in head), ""]
    for name, frame in tables.items():
        atomic_write_text(folder / f"{name}.csv", frame.to_csv(index=False))
        parts += [f"## {name}", "", to_markdown(frame, []).rstrip(), ""]
    parts += list(notes)
    md = "\n".join(parts).rstrip() + "\n"
    atomic_write_text(folder / "README.md", md)
    atomic_write_json(folder / "run.json", {"title": title, "header": head, "settings": settings,
                                            "environment": runtime.fingerprint(cfg),
                                            "tables": [f"{n}.csv" for n in tables],
                                            "figures": [str(Path(p).relative_to(folder)) for p in figures]})
    return md
