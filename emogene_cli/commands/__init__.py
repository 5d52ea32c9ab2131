"""The Typer commands, one module per subcommand: parse the options, call a pipeline, report.

No command holds pipeline logic: what a command does is importable without the CLI from
:mod:`emogene_cli.pipelines` (or, for ``train-ldm`` and ``train-a2m``, from
:mod:`emogene_cli.emotion` and :mod:`emogene_cli.motion`). Shared option types, the store
option and the rich output helpers are in :mod:`._common`.
"""
