"""Peak memory of the server process during one large HTTP upload (XEP-0363).

    .venv/bin/python -m bench.upload_memory [--size-mb 1024]

Starts Salon in a child process (upload module on, a fresh data folder under /tmp), takes a
slot from the upload service inside that process (the slot's XMPP round trip is not what is
measured), then PUTs ``--size-mb`` MiB to the plain-HTTP port from a generator (nothing is
held in the client either) and GETs it back. It reports the server's resident memory before
(VmRSS) and its peak (VmHWM from /proc) after, then deletes the data folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

CHUNK = 1 << 20


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


async def serve(data_dir: Path, size: int) -> None:
    """The child: run Salon, print the PUT and GET URLs of one slot, wait for stdin to close."""
    from salon.app import App
    from salon.config import settings_from_dict
    from salon.jid import JID
    from salon.namespaces import NS_HTTP_UPLOAD
    from salon.xml.element import Element

    settings = settings_from_dict(
        {
            "server": {"data_dir": str(data_dir), "log_level": "warning"},
            "c2s": {"port": 0, "direct_tls_port": 0, "direct_tls_enabled": False},
            "s2s": {"enabled": False},
            "http": {"port": 0, "tls_enabled": False},
            "modules": {"upload": {"max_file_size": size, "quota": size, "daily_quota": size}},
        }
    )
    app = App(settings)
    await app.start()
    module = app.core.hosts["localhost"].modules["upload"]
    iq = Element("iq", "jabber:client", {"type": "get", "id": "1", "from": "bench@localhost/x"})
    iq.add("request", NS_HTTP_UPLOAD, {"filename": "big.bin", "size": str(size)})
    reply = module._slot(iq, iq.first_child, JID.make("bench", "localhost"))  # type: ignore[attr-defined]
    slot = reply.first_child
    urls = {el.tag: el.get("url") for el in slot.elements()}
    print(json.dumps(urls), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await app.stop()


async def generate(total: int) -> AsyncIterator[bytes]:
    block = b"\xa5" * CHUNK
    sent = 0
    while sent < total:
        n = min(CHUNK, total - sent)
        sent += n
        yield block[:n]


async def measure(size_mb: int) -> None:
    import aiohttp

    size = size_mb * CHUNK
    data_dir = Path(tempfile.mkdtemp(prefix="salon-upload-bench-"))
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.upload_memory", "--serve", str(data_dir), str(size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        urls = json.loads(child.stdout.readline())
        before = proc_kib(child.pid, "VmRSS")
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=1800)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            async with http.put(urls["put"], data=generate(size), headers=headers) as resp:
                assert resp.status == 201, resp.status
            upload_s = time.monotonic() - started
            received = 0
            async with http.get(urls["get"]) as resp:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    received += len(chunk)
            assert received == size, received
        peak = proc_kib(child.pid, "VmHWM")
        after = proc_kib(child.pid, "VmRSS")
        print(
            f"upload {size_mb} MiB in {upload_s:.1f} s ({size_mb / upload_s:.0f} MiB/s), "
            f"downloaded back in {time.monotonic() - started - upload_s:.1f} s\n"
            f"server RSS before: {before / 1024:.1f} MiB, after: {after / 1024:.1f} MiB, "
            f"peak (VmHWM): {peak / 1024:.1f} MiB"
        )
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(30)
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--serve", nargs=2, metavar=("DATA_DIR", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(Path(args.serve[0]), int(args.serve[1])))
    else:
        asyncio.run(measure(args.size_mb))


if __name__ == "__main__":
    main()
