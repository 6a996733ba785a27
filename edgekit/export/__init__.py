"""Export: from a loaded model to verified artefacts in a run folder.

``plan`` (the CLI's entry: what to export, in which order), ``jobs`` and ``worker`` (formats
converted in worker processes), ``steps`` (one format: convert, verify, record), ``search`` (the
``--max-drop`` accuracy search), ``prune`` and ``verify``. Values pass downward only: the plan
builds typed jobs, the jobs run steps, the steps call the formats.
"""
