// rhea over WebSocket, as a browser page or a Node.js service behind a proxy connects: the `ws`
// package as the WebSocket implementation, subprotocol "amqp", then 20 messages sent and
// received back with at-least-once settlement. Arguments: the ws:// or wss:// URL, and for
// wss the CA file to trust.
const rhea = require('rhea');
const WebSocket = require('ws');
const fs = require('fs');

const url = process.argv[2];
const wsOptions = process.argv[3] ? { ca: [fs.readFileSync(process.argv[3])] } : {};

const total = 20;
const container = rhea.create_container({ id: 'rhea-websocket' });
const ws = container.websocket_connect(WebSocket);
let accepted = 0;
let received = 0;
const connection = container.connect({
  connection_details: ws(url, ['amqp'], wsOptions),
  reconnect: false,
});
const sender = connection.open_sender('rhea.websocket');
sender.on('sendable', () => {
  while (sender.sendable() && sender.sent === undefined) {
    for (let i = 0; i < total; i++) sender.send({ body: `over websocket ${i}` });
    sender.sent = true;
  }
});
sender.on('accepted', () => {
  accepted += 1;
  if (accepted === total) {
    console.log(`accepted ${accepted}`);
    connection.open_receiver({ source: 'rhea.websocket', autoaccept: true });
  }
});
container.on('message', (context) => {
  received += 1;
  if (received === total) {
    console.log(`received ${received}, last: ${context.message.body}`);
    connection.close();
  }
});
container.on('error', (e) => {
  console.error(`error: ${e}`);
  process.exit(1);
});
container.on('disconnected', (context) => {
  if (context.error) {
    console.error(`disconnected: ${context.error}`);
    process.exit(1);
  }
});
