"""``emogene list``: identities and models in the store, with sizes and what produced them."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from ..store import BUNDLED_A2M, BUNDLED_LDM, load_artifact
from ._common import console, get_store


def _size(path: Path) -> str:
    if path.is_dir():
        n = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    else:
        n = path.stat().st_size
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _describe(path: Path) -> str:
    try:
        art = load_artifact(path)
    except Exception as exc:
        return f"unreadable ({exc})"
    params = art.params
    keep = {k: params[k] for k in ("preset", "size", "epochs", "video", "data_dir") if k in params}
    kind = f" [{art.feature_kind}]" if art.feature_kind else ""
    return f"{art.metadata.get('producer', '?')}{kind} {json.dumps(keep) if keep else ''}".strip()


def list_command(ctx: typer.Context) -> None:
    """List identities and models in the store with their sizes and producing commands."""
    store = get_store(ctx)
    table = Table(title=f"emogene store: {store.home}", title_justify="left")
    for col in ("item", "artifact", "size", "made by"):
        table.add_column(col)
    for name in store.identities():
        for label, path in (
            ("dataset", store.dataset_path(name)),
            ("frames", store.frames_dir(name)),
            ("renderer", store.renderer_path(name)),
            ("audio-to-motion", store.a2m_path(name)),
        ):
            if path.exists():
                table.add_row(name, label, _size(path), "preprocess (images)" if path.is_dir() else _describe(path))
        if not (store.renderer_path(name).exists() and store.a2m_path(name).exists()):
            table.add_row(name, "[yellow]not fitted[/yellow]", "", f"run: emogene fit-identity {name}")
    bundled = (BUNDLED_LDM, BUNDLED_A2M)
    for label, path in (("ldm", store.ldm_file), ("audio-to-motion (generic)", store.generic_a2m_file)):
        if path.exists():
            table.add_row("models", label + (" [dim](bundled)[/dim]" if path in bundled else ""), _size(path), _describe(path))
    if table.row_count == 0:
        console.print(f"the store at {store.home} is empty: start with `emogene preprocess VIDEO`")
        return
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("list")(list_command)
