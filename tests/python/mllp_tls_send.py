"""Sends HL7 v2 messages over MLLP with TLS, using the hl7 package's asyncio MLLP client
(hl7.mllp.open_hl7_connection) on a TLS connection that verifies the server against a
given CA file. Prints each ACK on one line (segments joined by " | ").

    python3 tests/python/mllp_tls_send.py HOST PORT CAFILE MESSAGE...

Exit status 3 when the TLS handshake fails (e.g. an untrusted certificate).
"""

import asyncio
import ssl
import sys

import hl7
from hl7.mllp import open_hl7_connection


async def main(host, port, cafile, messages):
    context = ssl.create_default_context(cafile=cafile if cafile != "-" else None)
    try:
        reader, writer = await asyncio.wait_for(
            open_hl7_connection(host, int(port), ssl=context, server_hostname="localhost", encoding="utf-8"), 10
        )
    except ssl.SSLError as error:
        print(f"TLS handshake failed: {error}", file=sys.stderr)
        return 3
    for text in messages:
        writer.writemessage(hl7.parse(text.replace("\n", "\r")))
        await writer.drain()
        ack = await asyncio.wait_for(reader.readmessage(), 10)
        print(" | ".join(str(segment) for segment in ack))
    writer.close()
    await writer.wait_closed()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])))
