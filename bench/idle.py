"""Memory per idle authenticated session: start Salon, log N clients in, compare RSS.

    python -m bench.idle --sessions 1000 [--tls]

Clients authenticate with SASL PLAIN (over STARTTLS with --tls), bind, send initial presence
and then stay silent. The figure is (RSS after - RSS before) / N of the server process.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import scramp

NS = "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def read_until(reader: asyncio.StreamReader, marker: bytes, buf: bytearray) -> bytes:
    """Consume ``buf`` (refilled from ``reader``) up to and including ``marker``."""
    while marker not in buf:
        data = await reader.read(65536)
        if not data:
            raise ConnectionError(f"closed while waiting for {marker!r}: {bytes(buf[-300:])!r}")
        buf.extend(data)
    end = buf.index(marker) + len(marker)
    consumed = bytes(buf[:end])
    del buf[:end]
    return consumed


def element_text(frame: bytes, tag: bytes) -> str:
    start = frame.rindex(b"<" + tag)
    return frame[frame.index(b">", start) + 1 : frame.rindex(b"</" + tag)].decode()


CLIENT_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # built once: loading CAs is slow
CLIENT_TLS.check_hostname = False
CLIENT_TLS.verify_mode = ssl.CERT_NONE
SASL = "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'"


async def scram_sha1(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    buf: bytearray,
    user: str,
    password: str,
) -> None:
    client = scramp.ScramClient(["SCRAM-SHA-1"], user, password)
    first = base64.b64encode(client.get_client_first().encode()).decode()
    writer.write(f"<auth {SASL} mechanism='SCRAM-SHA-1'>{first}</auth>".encode())
    frame = await read_until(reader, b"</challenge>", buf)
    client.set_server_first(base64.b64decode(element_text(frame, b"challenge")).decode())
    final = base64.b64encode(client.get_client_final().encode()).decode()
    writer.write(f"<response {SASL}>{final}</response>".encode())


async def login(port: int, user: str, password: str, use_tls: bool) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    buf = bytearray()
    header = f"<stream:stream to='localhost' version='1.0' {NS}>".encode()
    writer.write(header)
    await read_until(reader, b"</stream:features>", buf)
    if use_tls:
        writer.write(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await read_until(reader, b"<proceed", buf)
        await writer.start_tls(CLIENT_TLS, server_hostname="localhost")
        buf.clear()
        writer.write(header)
        await read_until(reader, b"</stream:features>", buf)
    if use_tls:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        writer.write(f"<auth {SASL} mechanism='PLAIN'>{token}</auth>".encode())
    else:
        await scram_sha1(reader, writer, buf, user, password)
    await read_until(reader, b"<success", buf)
    writer.write(header)
    await read_until(reader, b"</stream:features>", buf)
    writer.write(
        b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq><presence/>"
    )
    await read_until(reader, b"</iq>", buf)
    return writer


async def run(sessions: int, use_tls: bool) -> None:
    root = Path(tempfile.mkdtemp(prefix="salon-bench-"))
    config = root / "salon.toml"
    config.write_text(
        f"""
[server]
data_dir = "{root}"
log_level = "warning"
[c2s]
port = 15222
direct_tls_enabled = false
require_encryption = {"true" if use_tls else "false"}
idle_timeout = 3600.0
"""
    )
    salon = [sys.executable, "-m", "salon"]
    subprocess.run([*salon, "init", "--config", str(config)], check=True, capture_output=True)
    users = [f"u{i}" for i in range(sessions)]
    await create_accounts(config, users)
    env = dict(os.environ)
    cmd = ["taskset", "-c", "0", *salon, "serve", "--config", str(config)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        await wait_port(15222)
        time.sleep(0.5)
        before = rss_kib(proc.pid)
        writers = []
        started = time.monotonic()
        batch = 100
        for i in range(0, sessions, batch):
            writers += await asyncio.gather(
                *(login(15222, u, "pw", use_tls) for u in users[i : i + batch])
            )
        elapsed = time.monotonic() - started
        await asyncio.sleep(2)
        after = rss_kib(proc.pid)
        per = (after - before) * 1024 / sessions
        kind = "STARTTLS" if use_tls else "plaintext"
        print(f"sessions={sessions} transport={kind} rss_before={before} KiB rss_after={after} KiB")
        print(f"rss per idle session: {per / 1024:.1f} KiB ({per:.0f} bytes)")
        print(f"logged in {sessions} sessions in {elapsed:.1f}s ({sessions / elapsed:.0f}/s)")
        for w in writers:
            w.close()
    finally:
        proc.terminate()
        proc.wait(10)


async def create_accounts(config: Path, users: list[str]) -> None:
    from salon.auth.credentials import make_credentials
    from salon.config import load_settings
    from salon.storage import open_storage

    settings = load_settings(config)
    storage = await open_storage(settings.storage_url(), base_dir=settings.data_path())
    creds = make_credentials("pw")
    for user in users:
        await storage.accounts.create("localhost", user, creds)
    await storage.close()


async def wait_port(port: int) -> None:
    for _ in range(100):
        try:
            _r, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError("server did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(args.sessions, args.tls))


if __name__ == "__main__":
    main()
