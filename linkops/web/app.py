"""``create_app(services)``: the Quart-Trio application with every blueprint registered."""

from __future__ import annotations

from quart import Response, request, send_from_directory, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import NotFound

from linkops.resources import bundled_dir
from linkops.services import Services
from linkops.web import (
    auth_routes,
    enrollment_routes,
    errors,
    health_routes,
    inventory_routes,
    openapi,
    operations_routes,
    recording_routes,
    tables_routes,
    terminal_routes,
)
from linkops.web.contract import endpoint
from linkops.web.hosts import allowed_hosts, host_allowed, host_refused

ROUTES = (
    health_routes,
    auth_routes,
    inventory_routes,
    enrollment_routes,
    operations_routes,
    terminal_routes,
    recording_routes,
    tables_routes,
    openapi,
)

# Browsers get a strict policy: our own scripts only, no framing, no inline script. xterm.js
# sets inline styles, hence 'unsafe-inline' for styles alone. The recordings player runs its
# terminal emulator as WebAssembly: 'wasm-unsafe-eval' allows compiling WebAssembly only (not
# eval of JavaScript), and only our own files can ask for it.
CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)


def create_app(services: Services) -> QuartTrio:
    app = QuartTrio("linkops", static_folder=None)
    app.config["LINKOPS_SERVICES"] = services
    app.config["MAX_CONTENT_LENGTH"] = services.settings.api.max_body_bytes
    # Streams (SSE) set their own timeouts; ordinary responses must not hang forever.
    app.config["RESPONSE_TIMEOUT"] = 60
    app.config["BODY_TIMEOUT"] = 30
    app.json.sort_keys = False  # type: ignore[attr-defined]
    errors.register(app)
    for module in ROUTES:
        app.register_blueprint(module.blueprint)

    static_root = bundled_dir("frontend")

    @app.get("/")
    @endpoint("The web UI", auth=False, content_type="text/html", errors=(404,))
    async def index() -> Response:
        return await send_from_directory(static_root, "index.html")

    @app.get("/<path:path>")
    @endpoint("The web UI's static files", auth=False, content_type="*/*", errors=(404,))
    async def static_file(path: str) -> Response:
        if path.startswith("api/"):
            raise NotFound()
        return await send_from_directory(static_root, path)

    allowed = allowed_hosts(services.settings.api)

    @app.before_request
    async def check_host() -> Response | None:
        # /api/health stays open to any Host: monitors and load balancers probe it by address.
        if request.path == "/api/health" or host_allowed(request.headers.get("Host"), allowed):
            return None
        return host_refused(request.headers.get("Host"))

    @app.before_websocket
    async def check_websocket_host() -> Response | None:
        if host_allowed(websocket.headers.get("Host"), allowed):
            return None
        return host_refused(websocket.headers.get("Host"))

    @app.after_request
    async def security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if request.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        else:
            response.headers.setdefault("Content-Security-Policy", CSP)
        return response

    return app
