"""Sends HL7 v2 messages over MLLP with TLS, using the hl7 package's asyncio MLLP client
(hl7.mllp.open_hl7_connection) on a TLS connection that verifies the server against a
given CA file. Prints each ACK on one line (segments joined by " | ").

    python3 tests/python/mllp_tls_send.py HOST PORT CAFILE MESSAGE...

With KITH_TEST_CLIENT_CERT (and KITH_TEST_CLIENT_KEY, when the key is not in the same PEM
file) set, the client presents that certificate (ssl load_cert_chain).

Exit status 3 when the TLS handshake fails (e.g. an untrusted certificate); 4 when the
server closes the connection (or resets it) before an ACK arrives, e.g. because the
connection is bound to no integration. The ACKs received before that are printed.
"""

import asyncio
import os
import ssl
import sys

import hl7
from hl7.mllp import open_hl7_connection


def client_context(cafile):
    context = ssl.create_default_context(cafile=cafile if cafile != "-" else None)
    certificate = os.environ.get("KITH_TEST_CLIENT_CERT")
    if certificate:
        context.load_cert_chain(certificate, os.environ.get("KITH_TEST_CLIENT_KEY") or None)
    return context


async def main(host, port, cafile, messages):
    context = client_context(cafile)
    try:
        reader, writer = await asyncio.wait_for(
            open_hl7_connection(host, int(port), ssl=context, server_hostname="localhost", encoding="utf-8"), 10
        )
    except ssl.SSLError as error:
        print(f"TLS handshake failed: {error}", file=sys.stderr)
        return 3
    for text in messages:
        try:
            writer.writemessage(hl7.parse(text.replace("\n", "\r")))
            await writer.drain()
            ack = await asyncio.wait_for(reader.readmessage(), 10)
        except (asyncio.IncompleteReadError, ConnectionError, EOFError, ssl.SSLError) as error:
            print(f"the connection closed without an ACK: {error!r}", file=sys.stderr)
            writer.close()
            return 4
        print(" | ".join(str(segment) for segment in ack), flush=True)
    writer.close()
    await writer.wait_closed()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])))
