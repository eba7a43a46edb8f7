// kafkajs against `rivulet serve --auth`: SCRAM-SHA-256 produce and consume, and a wrong
// password refused; with CERT_DIR (from `rivulet cert dev`) over TLS with a client
// certificate (SASL_SSL). Usage: node kafkajs_auth.js BOOTSTRAP USER PASSWORD [CERT_DIR]
const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, username, password, certs] = process.argv.slice(2);
const ssl = certs && {
  ca: [fs.readFileSync(`${certs}/ca.pem`)],
  cert: fs.readFileSync(`${certs}/client.pem`),
  key: fs.readFileSync(`${certs}/client-key.pem`),
};
const over = ssl ? ' over TLS' : '';

function client(pass) {
  return new Kafka({
    clientId: 'kafkajs-auth',
    brokers: [bootstrap],
    ssl,
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
  console.log(`OK kafkajs SCRAM-SHA-256${over}`);
  const wrong = client('not-the-password').producer();
  try {
    await wrong.connect();
    throw new Error('a wrong password connected');
  } catch (e) {
    if (!/SASL SCRAM SHA256 authentication failed|Authentication failed/i.test(String(e.message))) {
      throw new Error(`unexpected error: ${e.message}`);
    }
  }
  console.log(`OK kafkajs wrong password refused${over}`);
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
