"""The local web page, served by the service itself under /ui/ (README.md here says what it does).

Plain files from static/, read once when the app is made: only those names are served, so no
request path reaches the file system. Every /ui response carries a strict Content-Security-Policy
(no inline script or style, nothing from another origin) and is never cached. The page needs no
credentials to load; it signs in with an API key that it sends on each API call.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse, Response

STATIC = Path(__file__).with_name("static")
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # a shared workstation keeps no copy of the page
    "X-Frame-Options": "DENY",  # frame-ancestors for older browsers
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def load_files(directory: Path = STATIC) -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, media type) of every servable file in the folder (flat: no subfolders)."""
    return {
        p.name: (p.read_bytes(), TYPES[p.suffix]) for p in sorted(directory.iterdir()) if p.suffix in TYPES
    }


def mount_ui(app: FastAPI, directory: Path = STATIC) -> None:
    files = load_files(directory)

    @app.get("/ui", include_in_schema=False)
    async def ui_root():
        return RedirectResponse("/ui/", status_code=308, headers=HEADERS)

    @app.get("/ui/{name:path}", include_in_schema=False)  # any path below, so each 404 has the headers too
    async def ui_file(name: str) -> Response:
        name = name or "index.html"
        if name not in files:
            return JSONResponse(
                {"detail": "no such file of the web page", "code": "not_found"}, 404, headers=HEADERS
            )
        data, media_type = files[name]
        return Response(data, media_type=media_type, headers=HEADERS)
