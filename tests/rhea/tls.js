// rhea over TLS, as a Node.js user connects to an amqps:// broker: transport 'tls' with the
// CA to trust (Node checks the server's name against the certificate), then 20 messages sent
// and received back with at-least-once settlement. Arguments: host:port, the CA file, and
// optionally the client certificate and key files (which make the broker offer EXTERNAL).
const rhea = require('rhea');
const fs = require('fs');

const port = process.argv[2].split(':')[1];
const options = {
  host: 'localhost',
  port: Number(port),
  transport: 'tls',
  ca: [fs.readFileSync(process.argv[3])],
  servername: 'localhost',
  reconnect: false,
};
if (process.argv[4]) {
  options.cert = fs.readFileSync(process.argv[4]);
  options.key = fs.readFileSync(process.argv[5]);
  options.enable_sasl_external = true;
}

const total = 20;
const container = rhea.create_container({ id: 'rhea-tls' });
let accepted = 0;
let received = 0;
const connection = container.connect(options);
const sender = connection.open_sender('rhea.tls');
sender.on('sendable', () => {
  while (sender.sendable() && sender.sent === undefined) {
    for (let i = 0; i < total; i++) sender.send({ body: `over tls ${i}` });
    sender.sent = true;
  }
});
sender.on('accepted', () => {
  accepted += 1;
  if (accepted === total) {
    console.log(`accepted ${accepted}`);
    connection.open_receiver({ source: 'rhea.tls', autoaccept: true });
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
