// Peer of `kith serve --mllp-listen` for bench/hl7/mllp: @medplum/hl7's Hl7Server answering
// every message with its ACK and storing nothing.
//
// usage: node hl7_server_medplum.mjs PORT      (0: a free port the system picks)
//
// Listens on 127.0.0.1:PORT only (Hl7Server.start hands its argument to net.Server.listen,
// so it takes { port, host }; the address is checked). Each message is answered with
// message.buildAck() (MSA-1 AA, MSA-2 the message's MSH-10), the handler Medplum documents;
// nothing is written anywhere. Prints a ready line when listening; stops on SIGTERM or
// SIGINT. @medplum/hl7 uses @medplum/core, which reads WebSocket at load time: on Node 20
// start node with --experimental-websocket (bench/hl7/mllp does).

import { readFileSync } from 'node:fs';
import process from 'node:process';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error('usage: node hl7_server_medplum.mjs PORT   (0: any free port)');
  process.exit(2);
}
if (typeof WebSocket === 'undefined') {
  console.error('hl7_server_medplum.mjs: @medplum/core needs a global WebSocket: run node with --experimental-websocket');
  process.exit(2);
}
const { Hl7Server } = await import('@medplum/hl7');

function versionOf(path) {
  return JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')).version;
}
const hl7Version = versionOf('./node_modules/@medplum/hl7/package.json');
let coreVersion;
try {
  // @medplum/hl7 pins its own @medplum/core; npm nests it when it differs from ours.
  coreVersion = versionOf('./node_modules/@medplum/hl7/node_modules/@medplum/core/package.json');
} catch {
  coreVersion = versionOf('./node_modules/@medplum/core/package.json');
}

let messages = 0;
let errors = 0;
const server = new Hl7Server((connection) => {
  connection.addEventListener('message', ({ message }) => {
    messages++;
    connection.send(message.buildAck());
  });
  connection.addEventListener('error', ({ error }) => {
    // A client closing its connection at the end of a run is not worth a line.
    if (error?.code !== 'ECONNRESET') {
      errors++;
      console.error(`hl7_server_medplum.mjs: connection error: ${error?.message ?? error}`);
    }
  });
});
await server.start({ port, host: '127.0.0.1' });
const address = server.server.address();
if (address?.address !== '127.0.0.1') {
  console.error(`hl7_server_medplum.mjs: expected to listen on 127.0.0.1, not ${JSON.stringify(address)}`);
  process.exit(1);
}
console.log(
  `hl7_server_medplum.mjs: listening on 127.0.0.1:${address.port} (@medplum/hl7 ${hl7Version}, @medplum/core ${coreVersion}, Node ${process.version})`
);

function stop() {
  console.log(`hl7_server_medplum.mjs: stopping after ${messages} messages, ${errors} connection errors`);
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
