"""The service container: every long-lived object the routes and the root nursery share.

Built once by :func:`linkops.server.build_services`; routes reach it through
``linkops.web.common.services()``. Services never import Quart.
"""

from __future__ import annotations

import attrs
import trio

from linkops.auth import AuthService
from linkops.config import Settings
from linkops.db import Database


@attrs.define
class Services:
    settings: Settings
    db: Database
    auth: AuthService
    # Set when the service begins to shut down: SSE streams and terminal sockets watch it and
    # end cleanly instead of being cut off by the server's graceful-shutdown deadline.
    closing: trio.Event = attrs.field(factory=trio.Event)
