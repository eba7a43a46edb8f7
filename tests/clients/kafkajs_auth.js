// kafkajs against `rivulet serve --auth`: SCRAM-SHA-256 produce and consume, and a wrong
// password refused. Usage: node kafkajs_auth.js BOOTSTRAP USER PASSWORD
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, username, password] = process.argv.slice(2);

function client(pass) {
  return new Kafka({
    clientId: 'kafkajs-auth',
    brokers: [bootstrap],
    sasl: { mechanism: 'scram-sha-256', username, password: pass },
    logLevel: logLevel.NOTHING,
    retry: { retries: 1 },
  });
}

async function main() {
  const kafka = client(password);
  const producer = kafka.producer();
  await producer.connect();
  const messages = Array.from({ length: 10 }, (_, i) => ({ key: `k${i}`, value: `js${i}` }));
  await producer.send({ topic: 'auth-js', messages });
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: 'auth-js-group' });
  await consumer.connect();
  await consumer.subscribe({ topic: 'auth-js', fromBeginning: true });
  const got = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out with ${got.length}`)), 30000);
    consumer.run({
      eachMessage: async ({ message }) => {
        got.push(message.value.toString());
        if (got.length === messages.length) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  await consumer.disconnect();
  if (got.join(',') !== messages.map((m) => m.value).join(',')) {
    throw new Error(`read back ${got}`);
  }
  console.log('OK kafkajs SCRAM-SHA-256');
  const wrong = client('not-the-password').producer();
  try {
    await wrong.connect();
    throw new Error('a wrong password connected');
  } catch (e) {
    if (!/SASL SCRAM SHA256 authentication failed|Authentication failed/i.test(String(e.message))) {
      throw new Error(`unexpected error: ${e.message}`);
    }
  }
  console.log('OK kafkajs wrong password refused');
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
