import xml.etree.ElementTree as ET
from tests.integration.web_helpers import BoshClient, WsClient, http_session
from tests.integration.harness import raw_session


async def test_ws(server):
    jid = await server.add_user()
    async with http_session(server) as http:
        ws = await WsClient.connect(
            http, server.http_url("/xmpp-websocket").replace("https", "wss")
        )
        full = await ws.login(jid)
        print(full)
        raw, rawjid = await raw_session(server)
        await ws.send(
            f"<message xmlns='jabber:client' to='{rawjid}' type='chat'><body>hi</body></message>"
        )
        print(ET.tostring(await raw.next()))
        await raw.send(f"<message to='{full}' type='chat'><body>yo</body></message>")
        print(await ws.next_text())
        await ws.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
        print(await ws.next_text())
        await ws.expect_closed()


async def test_bosh(server):
    jid = await server.add_user()
    async with http_session(server) as http:
        b = BoshClient(http, server.http_url("/http-bind"))
        full = await b.login(jid, wait="1")
        raw, rawjid = await raw_session(server)
        r = await b.request(
            f"<message xmlns='jabber:client' to='{rawjid}' type='chat'><body>hi</body></message>",
            wait="1",
        )
        print(ET.tostring(r))
        print(ET.tostring(await raw.next()))
        t = b.post_later()
        await raw.send(f"<message to='{full}' type='chat'><body>yo</body></message>")
        print(ET.tostring(await t))
        r = await b.request(type="terminate")
        print(ET.tostring(r))
        r = await b.request()
        print(ET.tostring(r))
