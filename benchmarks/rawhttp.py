"""A minimal HTTP/1.1 keep-alive client for the benchmarks' load generators.

httpx costs ~1.7 ms of CPU per request here, as much as the gateway itself; on two cores that
would measure the client, not the server. This one writes a request and reads its answer
(``Content-Length`` or chunked), nothing else.
"""

from __future__ import annotations

import asyncio


class RawConnection:
    """One keep-alive connection to 127.0.0.1:``port``; ``headers`` go with every request
    (``b"Name: value\\r\\n"`` lines)."""

    def __init__(self, port: int, headers: bytes = b"") -> None:
        self.port = port
        self.headers = headers

    async def open(self) -> RawConnection:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def post(self, path: bytes, body: bytes) -> int:
        """POST ``body``; the status (the answer is read and dropped)."""
        status, _ = await self.request(b"POST", path, body)
        return status

    async def request(self, method: bytes, path: bytes, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request; its status and whole body."""
        length = b"Content-Length: %d\r\n" % len(body) if body or method == b"POST" else b""
        self.writer.write(
            b"%s %s HTTP/1.1\r\nHost: bench\r\n%s%s\r\n%s"
            % (method, path, length, self.headers, body)
        )
        status = int((await self.reader.readline()).split()[1])
        size, chunked = 0, False
        while (line := await self.reader.readline()) != b"\r\n":
            name = line[: line.find(b":")].lower()
            if name == b"content-length":
                size = int(line[15:])
            elif name == b"transfer-encoding":
                chunked = b"chunked" in line.lower()
        if not chunked:
            return status, await self.reader.readexactly(size)
        parts = []
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            parts.append(await self.reader.readexactly(size + 2))  # the chunk and its CRLF
            if size == 0:
                return status, b"".join(part[:-2] for part in parts)

    def close(self) -> None:
        self.writer.close()
