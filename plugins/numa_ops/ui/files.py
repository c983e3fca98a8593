"""Which file under ``outputs/`` a URL path names, refusing anything that would leave it.

A path is refused before it touches the disk if any part is empty, ``.`` or ``..``, hidden, or still
holds a ``%`` or a backslash after the URL was decoded (an encoded traversal such as ``%252e%252e%252f``);
it is then resolved, symlinks included, and must stay inside the outputs folder (``paths.inside``).
Only report-like files are served: pages, images, JSON, CSV and text; not ``latest.json``, the shell's
pointer to the last run, which holds the server's absolute paths.
"""

from __future__ import annotations

from pathlib import Path

from numa_ops import paths

SERVED = {
    ".html": "text/html; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml",
    ".json": "application/json", ".csv": "text/csv; charset=utf-8", ".md": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8", ".log": "text/plain; charset=utf-8",
}


NOT_SERVED = "latest.json"  # numa_ops.pipeline.LATEST


class RefusedPath(ValueError):
    """A path that is not served; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def resolve(relative: str, outputs: Path | None = None) -> Path:
    """The file ``relative`` names under the outputs folder, or :class:`RefusedPath` saying why not."""
    outputs = outputs or paths.outputs_dir()
    parts = relative.split("/")
    for part in parts:
        if part in ("", ".", "..") or part.startswith(".") or "%" in part or "\\" in part or "\x00" in part:
            raise RefusedPath(f"refused: {relative!r} is not a plain path inside the outputs folder "
                              "(no '..', hidden, empty or encoded parts)", 400)
    try:
        path = paths.inside(outputs, *parts)
    except paths.UnsafePathError:
        raise RefusedPath(f"refused: {relative!r} leads outside the outputs folder", 403) from None
    if parts == [NOT_SERVED]:
        raise RefusedPath(f"refused: {NOT_SERVED} holds the server's own paths and is not served", 403)
    if path.suffix.lower() not in SERVED:
        raise RefusedPath(f"refused: only {', '.join(sorted(SERVED))} files are served, not {relative!r}", 403)
    if not path.is_file():
        raise RefusedPath(f"not found: {relative!r} (no such file in the outputs folder)", 404)
    return path


def media_type(path: Path) -> str:
    return SERVED[path.suffix.lower()]
