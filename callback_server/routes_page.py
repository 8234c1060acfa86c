"""The status page for a human: GET / (index.html) and GET /static/... (its files, model-viewer vendored).

Nothing is fetched from the internet: the page, its script and the 3D viewer are served from
callback_server/static/. Every answer carries a Content-Security-Policy that allows only this
origin, plus the S3 endpoints the meshes come from (for the viewer's fetch of the GLB):
`ServerSettings.model_origins` (ORFEAS_PAGE_MODEL_ORIGINS, else the origin of BUCKET_ENDPOINT_URL,
else any https origin).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
_CSP = web.AppKey("page_csp", str)


def content_security_policy(origins: tuple[str, ...]) -> str:
    models = " ".join(["'self'", *origins, "blob:", "data:"])
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            # model-viewer's shadow DOM carries its own <style> elements.
            "style-src 'self' 'unsafe-inline'",
            f"img-src 'self' {' '.join(origins)} blob: data:",
            f"connect-src {models}",
            "worker-src 'self' blob:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def _headers(request: web.Request, content_type: str, cache: str) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        "Content-Security-Policy": request.app[_CSP],
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": cache,
    }


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(
        STATIC_DIR / "index.html", headers=_headers(request, CONTENT_TYPES[".html"], "no-cache")
    )


async def static_file(request: web.Request) -> web.FileResponse:
    relative = request.match_info["path"]
    path = (STATIC_DIR / relative).resolve()
    content_type = CONTENT_TYPES.get(path.suffix.lower())
    if content_type is None or not path.is_relative_to(STATIC_DIR) or not path.is_file():
        raise web.HTTPNotFound(text="not found")
    return web.FileResponse(path, headers=_headers(request, content_type, "public, max-age=300"))


def add_page_routes(app: web.Application, model_origins: tuple[str, ...]) -> None:
    """Add GET / and GET /static/{path}, meshes previewed from `model_origins` (ServerSettings)."""
    app[_CSP] = content_security_policy(model_origins)
    app.router.add_get("/", index)
    app.router.add_get("/static/{path:.+}", static_file)
