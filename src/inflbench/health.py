"""Result health as table columns: did the method converge, which fine-tuning epoch was kept and why.

Read from a scores file's metadata (no torch needed), so detection and identification tables share it.
"""

from __future__ import annotations


def health_columns(meta: dict) -> dict:
    """Convergence of the method and the fine-tune's kept epoch, as table columns (from a scores file's meta)."""
    converged = bool(meta.get("meta.converged", True)) and not meta.get("meta.diverged", False)
    return {"converged": converged, "convergence": meta.get("meta.convergence", ""),
            "best_epoch": int(meta["best_epoch"]) if "best_epoch" in meta else None,
            "selection": meta.get("selection", "")}


def health_note(row) -> str:
    """Why a table row's ranking is not to be trusted (empty when it is)."""
    notes = []
    if not row.get("converged", True):
        notes.append(f"ranked on a flagged result: {row.get('convergence') or 'did not converge'}")
    if row.get("best_epoch") == 0:
        notes.append("scores of the untrained model (no epoch improved the validation loss)")
    return "; ".join(notes)
