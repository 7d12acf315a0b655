"""The analyses of thesis section 6: class activation maps (`cam`), hard subjects and the label
distribution (`subjects`), the 3-group Adience experiment (`groups`), the datasets' age
distributions (`distributions`).  Each answers one of the section's questions with one command
(`cascade explain cam`, `cascade analyse subjects|groups|distributions`) on any backbone, stage
and dataset, writing its tables and figures to `results/<run-id>/` (`common.write_outputs`)."""
