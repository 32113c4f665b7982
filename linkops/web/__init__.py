"""The HTTP/SSE/WebSocket layer: thin Quart-Trio routes over the services."""
