"""The web chat page at ``http.chat_path``: Converse.js, configured for this server.

Converse.js comes from npm (``make run`` and ``make test`` install the pinned version under
``var/web``); Salon serves its ``dist`` folder next to this page and never loads anything
from a CDN. Without those files the page says how to install them.
"""

from __future__ import annotations

import html
import json
import shlex
from pathlib import Path

CONVERSE_VERSION = "14.0.0"  # keep in step with the Makefile's CONVERSE_VERSION

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Salon chat · {title}</title>
<link rel="stylesheet" href="converse.min.css">
<script type="application/json" id="salon-config">{config}</script>
</head>
<body class="converse-fullscreen">
<noscript>This chat needs JavaScript.</noscript>
<script type="module">
import converse from "./converse.min.js";

const salon = JSON.parse(document.getElementById("salon-config").textContent);
const params = new URLSearchParams(location.search);
const options = {{
  assets_path: new URL("./", location.href).pathname,
  view_mode: "fullscreen",
  default_domain: salon.domain,
  discover_connection_methods: false,
  allow_non_roster_messaging: true,
  allow_registration: false,
  play_sounds: false,
  i18n: "en",
}};
if (params.get("transport") === "bosh") {{
  options.bosh_service_url = location.origin + salon.bosh_path;
}} else {{
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  options.websocket_url = scheme + "//" + location.host + salon.websocket_path;
}}
converse.initialize(options);
</script>
</body>
</html>
"""

_MISSING = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Salon chat · {title}</title></head>
<body>
<h1>The web chat is not installed</h1>
<p>This page runs <a href="https://conversejs.org/">Converse.js</a>, which Salon serves from
<code>{folder}</code>, but that folder has no <code>converse.min.js</code>.</p>
<p>Fetch it with <code>{fetch}</code> (Node.js's npm), then restart Salon.</p>
<p>XMPP clients can still connect over WebSocket at <code>{websocket_path}</code> and over
BOSH at <code>{bosh_path}</code>.</p>
</body>
</html>
"""


_INSECURE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Salon chat · {title}</title></head>
<body>
<h1>This chat needs an encrypted connection</h1>
<p>Salon only lets clients log in over encrypted connections, and this page was opened over
plain HTTP from another machine. Open it over HTTPS instead: turn on <code>[http]
tls_enabled</code>, or serve it through a reverse proxy that terminates TLS.</p>
</body>
</html>
"""


def chat_page(*, domain: str, bosh_path: str, websocket_path: str) -> str:
    """The page that starts Converse.js for ``domain`` (``?transport=bosh`` picks BOSH)."""
    config = json.dumps(
        {"domain": domain, "bosh_path": bosh_path, "websocket_path": websocket_path}
    ).replace("</", "<\\/")
    return _PAGE.format(title=html.escape(domain), config=config)


def fetch_command(folder: Path) -> str:
    """The shell command that puts Converse.js's ``dist`` files in ``folder`` (the resolved
    ``[http] web_client_dir``)."""
    package = f"converse.js@{CONVERSE_VERSION}"
    if folder.parts[-3:] == ("node_modules", "converse.js", "dist"):
        prefix = folder.parent.parent.parent
        return f"npm install --prefix {shlex.quote(str(prefix))} {package}"
    # any other folder: install beside it, then copy the dist folder in
    staging = folder.parent / ".converse-npm"
    return (
        f"npm install --prefix {shlex.quote(str(staging))} {package} && mkdir -p "
        f"{shlex.quote(str(folder))} && cp -R {shlex.quote(str(staging))}/node_modules/"
        f"converse.js/dist/. {shlex.quote(str(folder))}/"
    )


def missing_page(*, domain: str, folder: str, bosh_path: str, websocket_path: str) -> str:
    """Said instead when Converse.js's files are not there."""
    return _MISSING.format(
        title=html.escape(domain),
        folder=html.escape(folder),
        fetch=html.escape(fetch_command(Path(folder))),
        bosh_path=html.escape(bosh_path),
        websocket_path=html.escape(websocket_path),
    )


def insecure_page(*, domain: str) -> str:
    """Said instead of the chat when it could not log in: plain HTTP from another machine
    and no HTTPS port to send the browser to."""
    return _INSECURE.format(title=html.escape(domain))
