#!/usr/bin/env python3
"""Peer of `kith-bench hl7-parse` for bench/hl7/run: python-hl7's `hl7.parse`.

usage: parse_python.py CORPUS [SECONDS]

Reads a corpus written by `kith-bench hl7-corpus` (split on CR LF, each message keeping its
final CR), decodes each message from UTF-8 once, checks that `hl7.parse` reads every one,
then parses the whole corpus again and again on one thread for at least SECONDS (default 5)
per run, three runs after one second of warm-up, and prints the median in the RESULT format
that kith-bench prints. Only the `hl7.parse` calls are timed: the decoding happens before.
"""

import platform
import statistics
import sys
import time

import hl7

RUNS = 3
WARM_UP = 1.0


def load(path):
    with open(path, "rb") as file:
        data = file.read()
    pieces = data.split(b"\r\n")
    if pieces[-1]:
        sys.exit(f"{path}: {len(pieces[-1])} bytes after the last CR LF: the file must end with CR LF")
    messages = [piece + b"\r" for piece in pieces[:-1]]
    for index, message in enumerate(messages):
        if not message.startswith(b"MSH"):
            sys.exit(f"{path}: message {index + 1} does not start with MSH")
    return messages


def timed_run(texts, minimum):
    parse = hl7.parse
    parsed = 0
    sink = None
    start = time.perf_counter()
    while True:
        for text in texts:
            sink = parse(text)
        parsed += len(texts)
        elapsed = time.perf_counter() - start
        if elapsed >= minimum:
            break
    del sink
    return parsed, elapsed


def main():
    if len(sys.argv) not in (2, 3) or sys.argv[1] in ("-h", "--help"):
        sys.exit(__doc__)
    corpus = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) == 3 else 5.0
    if not seconds > 0:
        sys.exit("SECONDS must be a positive number")

    print(f"parse_python.py: hl7.parse (python-hl7 {hl7.__version__}, {platform.python_implementation()} {platform.python_version()})")
    raw = load(corpus)
    size = sum(len(message) for message in raw)
    texts = [message.decode("utf-8") for message in raw]

    segments = 0
    for index, text in enumerate(texts):
        try:
            segments += len(hl7.parse(text))
        except Exception as error:  # noqa: BLE001 - any failure makes the figures meaningless
            sys.exit(f"message {index + 1} does not parse: {error!r}")
    print(
        f"corpus {corpus}: {len(texts):,} messages, {segments:,} segments, {size:,} bytes "
        f"(mean {size / len(texts):.1f}); every message parses"
    )
    print(f"one thread, {RUNS} runs of at least {seconds:g} s after {WARM_UP:g} s of warm-up; str given (decoded before timing)")

    timed_run(texts, WARM_UP)
    rates = []
    for number in range(1, RUNS + 1):
        parsed, elapsed = timed_run(texts, seconds)
        rate = parsed / elapsed
        rates.append(rate)
        print(
            f"  run {number}: {rate:,.0f} messages/s, {rate * size / len(texts) / 1e6:.2f} MB/s "
            f"({parsed:,} messages in {elapsed:.2f} s)"
        )
    median = statistics.median(rates)
    mb_per_second = median * size / len(texts) / 1e6
    print(f"  median: {median:,.0f} messages/s, {mb_per_second:.2f} MB/s")
    print(
        f"RESULT name=python-hl7 messages_per_second={median:.0f} mb_per_second={mb_per_second:.2f} "
        f"messages={len(texts)} segments={segments} bytes={size} runs={','.join(f'{rate:.0f}' for rate in rates)}"
    )


if __name__ == "__main__":
    main()
