// Seed rabbitmq-basics.txt's exchanges as a rhea user writes them: receivers on amq.topic
// with legacy topic-binding filters (rhea's own selector helper builds filters the same way),
// one without a filter, a sender publishing by subject, a fanout, and an unroutable message
// released. Prints one line per check and exits.
const rhea = require('rhea');
const types = rhea.types;

const [host, port] = process.argv[2].split(':');
const binding = (key) => ({
  binding: types.wrap_described(key, 'apache.org:legacy-amqp-topic-binding:string'),
});

const container = rhea.create_container({ id: 'rhea-topics' });
const got = { 'log.*': [], '#.error': [], all: [], fanout: [] };
const expected = 2 + 2 + 4 + 1;
let received = 0;
let outcome = null;

function finish() {
  if (received < expected || outcome === null) return;
  for (const name of ['log.*', '#.error', 'all', 'fanout']) {
    console.log(`${name}: ${got[name].join(' ')}`);
  }
  console.log(`unroutable: ${outcome}`);
  connection.close();
}

const connection = container.connect({ host, port: Number(port), reconnect: false });
let ready = 0;
const receiver = (address, name, filter) => {
  const r = connection.open_receiver({ source: { address, filter }, name });
  r.on('receiver_open', () => {
    ready += 1;
    if (ready === 4) publish();
  });
  r.on('message', (context) => {
    got[name].push(context.message.body);
    received += 1;
    finish();
  });
};
receiver('amq.topic', 'log.*', binding('log.*'));
receiver('amq.topic', '#.error', binding('#.error'));
receiver('amq.topic', 'all', undefined);
receiver('amq.fanout', 'fanout', undefined);

function publish() {
  const topic = connection.open_sender('amq.topic');
  topic.on('sendable', () => {
    if (topic.sent) return;
    topic.sent = true;
    for (const subject of ['log.info', 'log.error', 'mq.log.error', 'kern.warn']) {
      topic.send({ subject, body: subject });
    }
  });
  const fanout = connection.open_sender('amq.fanout');
  fanout.once('sendable', () => fanout.send({ body: 'to all' }));
  const direct = connection.open_sender('amq.direct');
  direct.once('sendable', () => direct.send({ subject: 'nobody', body: 'lost?' }));
  direct.on('released', () => {
    outcome = 'released';
    finish();
  });
  direct.on('accepted', () => {
    outcome = 'accepted';
    finish();
  });
}

setTimeout(() => {
  console.log(`timed out: ${JSON.stringify(got)} outcome=${outcome}`);
  process.exit(1);
}, 20000).unref();
