"""The repository URL and branch, checked before git ever sees them; credentials kept apart.

Only ``https://``, ``ssh://``, ``user@host:path``, ``file://`` and absolute paths are
accepted; ``transport::address`` (``ext::``, ``fd::``), a leading ``-``, whitespace and
control characters are refused, as are hosts and ssh users starting with ``-``. A password
in an https URL is taken out of it (%-decoded) and travels as the token; what is shown
(API, logs, errors) never contains it.

*Errors*: :class:`~linkops.errors.ValidationError` ``INVALID_REPOSITORY_URL`` /
``INVALID_BRANCH`` (400); the message never echoes a password.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

import attrs

from linkops.errors import ValidationError

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SCP_RE = re.compile(r"^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+:(?!//)")
_BRANCH_RE = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")
_URL_CREDENTIALS_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")


@attrs.frozen
class RemoteUrl:
    """A checked remote: what git gets (no password), what people see, the credentials."""

    url: str
    protocol: str  # "https", "ssh" or "file": the one protocol git may use
    display: str
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)


def strip_credentials(text: str) -> str:
    """Remove ``user:password@`` from every URL in ``text`` (for logs, errors, the API)."""
    return _URL_CREDENTIALS_RE.sub(lambda m: m.group("scheme"), text)


def _redacted(url: str) -> str:
    """A URL fit for an error about it: everything before the last ``@`` of the authority is
    hidden, whatever characters a password may contain (it may be why the URL is bad)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url


def parse_remote_url(raw: str) -> RemoteUrl:
    """Check a repository URL (see the module docstring); raises ``INVALID_REPOSITORY_URL``."""
    url = raw.strip()

    def refuse(why: str) -> ValidationError:
        shown = _redacted(url)
        return ValidationError(f"[git] repository_url {shown!r}: {why}",
                               code="INVALID_REPOSITORY_URL", details={"repository": shown})

    if not url:
        raise refuse("is empty")
    if url.startswith("-"):
        raise refuse("must not start with '-'")
    if re.search(r"[\x00-\x20\x7f]", url):
        raise refuse("must not contain whitespace or control characters")
    scheme_match = _SCHEME_RE.match(url)
    if "::" in url.split("/", 1)[0] and not scheme_match:
        raise refuse("transport::address URLs (such as ext::) are not allowed")
    if scheme_match:
        scheme = scheme_match.group(1).lower()
        if scheme not in ("https", "ssh", "file"):
            raise refuse(f"scheme {scheme}:// is not allowed (use https, ssh or file)")
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 - raises ValueError for "user:pass/with/slash@host"
        except ValueError:
            raise refuse("has an invalid port (a password with '/' must be %-encoded)")
        host = parts.hostname or ""
        if scheme != "file" and (not host or host.startswith("-")):
            raise refuse("needs a host name that does not start with '-'")
        netloc = parts.netloc.rpartition("@")[2]
        user = parts.username
        if scheme == "ssh" and user:
            if user.startswith("-"):
                raise refuse("user name must not start with '-'")
            netloc = f"{user}@{netloc}"  # the ssh login name is not a secret
        clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        https = scheme == "https"
        return RemoteUrl(
            url=clean,
            protocol=scheme,
            display=clean,
            username=unquote(user) if https and user else None,
            password=unquote(parts.password) if https and parts.password else None,
        )
    if url.startswith("/"):
        return RemoteUrl(url=url, protocol="file", display=url)
    if _SCP_RE.match(url):
        return RemoteUrl(url=url, protocol="ssh", display=url)
    raise refuse("must be https://, ssh://, user@host:path, file:// or an absolute path")


def check_branch(branch: str) -> str:
    if (not _BRANCH_RE.match(branch) or branch.startswith(("-", "/")) or ".." in branch
            or branch.endswith((".lock", "/", "."))):
        raise ValidationError(f"[git] branch {branch!r} is not a valid branch name",
                              code="INVALID_BRANCH", details={"branch": branch})
    return branch
