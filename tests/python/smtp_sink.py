"""A real SMTP server for tests: it listens on 127.0.0.1 on a free port, prints the port as
its first line on standard output, and stores each message it accepts as a .eml file in the
directory given as its argument (written under a temporary name, then renamed, so that a
reader never sees half a message). It runs until killed.

    python3 tests/python/smtp_sink.py DIRECTORY
"""

import asyncio
import itertools
import pathlib
import sys

from aiosmtpd.smtp import SMTP


class SaveToDirectory:
    def __init__(self, directory: pathlib.Path):
        self.directory = directory
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        number = next(self.counter)
        temporary = self.directory / f".{number:06}.tmp"
        temporary.write_bytes(envelope.original_content or envelope.content)
        temporary.rename(self.directory / f"{number:06}.eml")
        return "250 Message accepted for delivery"


async def main(directory: pathlib.Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    handler = SaveToDirectory(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="smtp-sink.test"), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: smtp_sink.py DIRECTORY")
    asyncio.run(main(pathlib.Path(sys.argv[1])))
