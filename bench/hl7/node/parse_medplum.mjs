// Peer of `kith-bench hl7-parse` for bench/hl7/run: @medplum/core's Hl7Message.parse.
//
// usage: node parse_medplum.mjs CORPUS [SECONDS]
//
// Reads a corpus written by `kith-bench hl7-corpus` (split on CR LF, each message keeping its
// final CR), decodes each message from UTF-8 once, checks that Hl7Message.parse reads every
// one, then times two things on one thread, each for at least SECONDS (default 5) per run,
// three runs after one second of warm-up, and prints the medians in the RESULT format that
// kith-bench prints:
//
//   medplum        Hl7Message.parse(text) alone. In @medplum/core this splits the message
//                  into segment strings and indexes them by name; segments and fields are
//                  parsed later, when first read.
//   medplum-tree   Hl7Message.parse(text), then every segment's fields (message.segments,
//                  segment.fields): the whole tree of fields, repetitions and components
//                  that Medplum builds, still without subcomponents or unescaping.
//
// Only the parsing is timed: the decoding happens before. @medplum/core reads WebSocket at
// load time; on Node 20 start node with --experimental-websocket (bench/hl7/run does).

import { readFileSync } from 'node:fs';
import process from 'node:process';

const RUNS = 3;
const WARM_UP = 1.0;

if (typeof WebSocket === 'undefined') {
  console.error('parse_medplum.mjs: @medplum/core needs a global WebSocket: run node with --experimental-websocket');
  process.exit(2);
}
const { Hl7Message } = await import('@medplum/core');
const medplumVersion = JSON.parse(
  readFileSync(new URL('./node_modules/@medplum/core/package.json', import.meta.url), 'utf8')
).version;

function load(path) {
  const data = readFileSync(path);
  const messages = [];
  let start = 0;
  for (;;) {
    const end = data.indexOf('\r\n', start, 'latin1');
    if (end < 0) break;
    messages.push(data.subarray(start, end + 1));
    start = end + 2;
  }
  if (start !== data.length) {
    throw new Error(`${path}: ${data.length - start} bytes after the last CR LF: the file must end with CR LF`);
  }
  messages.forEach((message, index) => {
    if (message.toString('latin1', 0, 3) !== 'MSH') {
      throw new Error(`${path}: message ${index + 1} does not start with MSH`);
    }
  });
  return messages;
}

const sink = new Array(256);

function parseOnly(texts) {
  for (let i = 0; i < texts.length; i++) {
    sink[i & 255] = Hl7Message.parse(texts[i]);
  }
  return 0;
}

function parseTree(texts) {
  let fields = 0;
  for (let i = 0; i < texts.length; i++) {
    const message = Hl7Message.parse(texts[i]);
    for (const segment of message.segments) {
      fields += segment.fields.length;
    }
    sink[i & 255] = message;
  }
  return fields;
}

function timedRun(work, texts, minimum) {
  let parsed = 0;
  let check = 0;
  const start = process.hrtime.bigint();
  let elapsed;
  for (;;) {
    check += work(texts);
    parsed += texts.length;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
    if (elapsed >= minimum) break;
  }
  sink[0] = check;
  return { parsed, elapsed };
}

function group(value) {
  return Math.round(value).toLocaleString('en-GB');
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function main() {
  const args = process.argv.slice(2);
  if (args.length < 1 || args.length > 2 || args[0] === '-h' || args[0] === '--help') {
    console.error('usage: node parse_medplum.mjs CORPUS [SECONDS]');
    process.exit(2);
  }
  const corpus = args[0];
  const seconds = args.length === 2 ? Number(args[1]) : 5;
  if (!(seconds > 0)) {
    console.error('SECONDS must be a positive number');
    process.exit(2);
  }

  console.log(`parse_medplum.mjs: Hl7Message.parse (@medplum/core ${medplumVersion}, Node ${process.version})`);
  const raw = load(corpus);
  const size = raw.reduce((total, message) => total + message.length, 0);
  // A fresh, flat string per message, as a caller decoding bytes off the wire would have.
  const texts = raw.map((message) => message.toString('utf8'));

  let segments = 0;
  texts.forEach((text, index) => {
    try {
      const message = Hl7Message.parse(text);
      // The final CR leaves an empty last segment in Medplum's split: not counted.
      segments += message.segments.filter((segment) => segment.name !== '').length;
    } catch (error) {
      console.error(`message ${index + 1} does not parse: ${error}`);
      process.exit(1);
    }
  });
  console.log(
    `corpus ${corpus}: ${group(texts.length)} messages, ${group(segments)} segments, ${group(size)} bytes ` +
      `(mean ${(size / texts.length).toFixed(1)}); every message parses`
  );
  console.log(
    `one thread, ${RUNS} runs of at least ${seconds} s after ${WARM_UP} s of warm-up; string given (decoded before timing)`
  );

  for (const [name, label, work] of [
    ['medplum', 'Hl7Message.parse alone (segments parsed lazily)', parseOnly],
    ['medplum-tree', 'Hl7Message.parse, then every segment.fields (the whole tree)', parseTree],
  ]) {
    console.log(`${name}: ${label}`);
    timedRun(work, texts, WARM_UP);
    const rates = [];
    for (let number = 1; number <= RUNS; number++) {
      const { parsed, elapsed } = timedRun(work, texts, seconds);
      const rate = parsed / elapsed;
      rates.push(rate);
      console.log(
        `  run ${number}: ${group(rate)} messages/s, ${((rate * size) / texts.length / 1e6).toFixed(2)} MB/s ` +
          `(${group(parsed)} messages in ${elapsed.toFixed(2)} s)`
      );
    }
    const middle = median(rates);
    const mbPerSecond = (middle * size) / texts.length / 1e6;
    console.log(`  median: ${group(middle)} messages/s, ${mbPerSecond.toFixed(2)} MB/s`);
    console.log(
      `RESULT name=${name} messages_per_second=${middle.toFixed(0)} mb_per_second=${mbPerSecond.toFixed(2)} ` +
        `messages=${texts.length} segments=${segments} bytes=${size} runs=${rates.map((r) => r.toFixed(0)).join(',')}`
    );
  }
}

main();
