// What RabbitMQ's JavaScript tutorials 1-7 cover, written for Rivulet's tests with
// amqplib's callback API: `node tutorials.js <amqp url> <name>`; prints `OK <name> ...`.
const amqp = require('amqplib/callback_api');

const [url, name] = process.argv.slice(2);
const fail = (why) => { console.error(`FAIL ${name}: ${why}`); process.exit(1); };
setTimeout(() => fail('timed out'), 20000).unref();
const must = (err) => { if (err) fail(err.message || String(err)); };

// Opens a connection and a channel (a confirm channel when asked).
function open(confirm, cb) {
  amqp.connect(url, (err, conn) => {
    must(err);
    const make = confirm ? conn.createConfirmChannel.bind(conn) : conn.createChannel.bind(conn);
    make((err2, ch) => { must(err2); cb(conn, ch); });
  });
}

function done(summary, conns) {
  console.log(`OK ${name} ${summary}`);
  let left = conns.length;
  conns.forEach((c) => c.close(() => { if (--left === 0) process.exit(0); }));
}

const tutorials = {
  // 1: a named queue, one message, a consumer without acks.
  hello() {
    open(false, (conn, ch) => {
      ch.assertQueue('hello', { durable: false });
      ch.sendToQueue('hello', Buffer.from('Hello World!'));
      ch.consume('hello', (msg) => {
        if (msg.content.toString() !== 'Hello World!') fail(`got ${msg.content}`);
        done('Hello World!', [conn]);
      }, { noAck: true });
    });
  },

  // 2: a durable task queue, persistent messages, two workers with prefetch 1 and acks.
  work() {
    const total = 10;
    const seen = new Map();
    const perWorker = [0, 0];
    const conns = [];
    const worker = (id) => open(false, (conn, ch) => {
      conns.push(conn);
      ch.assertQueue('task_queue', { durable: true });
      ch.prefetch(1);
      ch.consume('task_queue', (msg) => {
        const body = msg.content.toString();
        const dots = body.split('.').length - 1;
        setTimeout(() => {
          seen.set(body, (seen.get(body) || 0) + 1);
          perWorker[id] += 1;
          ch.ack(msg);
          if (seen.size === total) {
            if ([...seen.values()].some((n) => n !== 1)) fail('a task was processed twice');
            if (perWorker.some((n) => n === 0)) fail(`unfair dispatch ${perWorker}`);
            setTimeout(() => done(`${total} tasks ${perWorker.join('+')}`, conns), 200);
          }
        }, 20 * dots);
      }, { noAck: false });
    });
    worker(0);
    worker(1);
    setTimeout(() => open(false, (conn, ch) => {
      conns.push(conn);
      ch.assertQueue('task_queue', { durable: true });
      for (let i = 0; i < total; i += 1) {
        ch.sendToQueue('task_queue', Buffer.from(`task ${i}${'.'.repeat(i % 4)}`), { persistent: true });
      }
    }), 300);
  },

  // 3: a fanout exchange, each subscriber with its own server-named exclusive queue.
  pubsub() {
    const got = [[], []];
    const conns = [];
    let ready = 0;
    const subscriber = (id) => open(false, (conn, ch) => {
      conns.push(conn);
      ch.assertExchange('logs', 'fanout', { durable: false });
      ch.assertQueue('', { exclusive: true }, (err, q) => {
        must(err);
        if (!q.queue.startsWith('amq.gen-')) fail(`server-named queue ${q.queue}`);
        ch.bindQueue(q.queue, 'logs', '');
        ch.consume(q.queue, (msg) => {
          got[id].push(msg.content.toString());
          if (got[0].length === 5 && got[1].length === 5) done('5 messages to 2 subscribers', conns);
        }, { noAck: true }, (err2) => { must(err2); ready += 1; if (ready === 2) publish(); });
      });
    });
    const publish = () => open(false, (conn, ch) => {
      conns.push(conn);
      ch.assertExchange('logs', 'fanout', { durable: false });
      for (let i = 0; i < 5; i += 1) ch.publish('logs', '', Buffer.from(`log ${i}`));
    });
    subscriber(0);
    subscriber(1);
  },

  // 4: a direct exchange routing by severity.
  routing() {
    subscribeAndPublish('direct_logs', 'direct',
      [['error'], ['info', 'warning', 'error']],
      [['info', 'info msg'], ['warning', 'warning msg'], ['error', 'error msg']],
      [['error msg'], ['info msg', 'warning msg', 'error msg']]);
  },

  // 5: a topic exchange with * and # patterns.
  topics() {
    subscribeAndPublish('topic_logs', 'topic',
      [['*.critical'], ['kern.#']],
      [['kern.critical', 'a'], ['kern.info', 'b'], ['app.critical', 'c'], ['app.info.deep', 'd']],
      [['a', 'c'], ['a', 'b']]);
  },

  // 6: RPC: a server answering on the reply queue with the correlation id.
  rpc() {
    const fib = (n) => (n < 2 ? n : fib(n - 1) + fib(n - 2));
    const conns = [];
    open(false, (sconn, sch) => {
      conns.push(sconn);
      sch.assertQueue('rpc_queue', { durable: false });
      sch.prefetch(1);
      sch.consume('rpc_queue', (msg) => {
        const n = parseInt(msg.content.toString(), 10);
        sch.sendToQueue(msg.properties.replyTo, Buffer.from(String(fib(n))),
          { correlationId: msg.properties.correlationId });
        sch.ack(msg);
      }, {}, (err) => {
        must(err);
        open(false, (conn, ch) => {
          conns.push(conn);
          ch.assertQueue('', { exclusive: true }, (err2, q) => {
            must(err2);
            const want = new Map([['c10', 55], ['c15', 610], ['c20', 6765]]);
            const answers = new Map();
            ch.consume(q.queue, (msg) => {
              const id = msg.properties.correlationId;
              if (!want.has(id)) fail(`unknown correlation id ${id}`);
              answers.set(id, parseInt(msg.content.toString(), 10));
              if (answers.size === want.size) {
                for (const [k, v] of want) if (answers.get(k) !== v) fail(`${k}: ${answers.get(k)}`);
                done('fib(10,15,20) = 55,610,6765', conns);
              }
            }, { noAck: true });
            for (const n of [10, 15, 20]) {
              ch.sendToQueue('rpc_queue', Buffer.from(String(n)), { correlationId: `c${n}`, replyTo: q.queue });
            }
          });
        });
      });
    });
  },

  // 7: publisher confirms, one at a time and in a batch.
  confirms() {
    open(true, (conn, ch) => {
      ch.assertQueue('confirmed', { durable: true });
      let i = 0;
      const one = () => {
        if (i === 50) return batch();
        ch.sendToQueue('confirmed', Buffer.from(`one ${i}`), { persistent: true }, (err) => {
          must(err);
          i += 1;
          one();
        });
      };
      const batch = () => {
        for (let j = 0; j < 200; j += 1) ch.sendToQueue('confirmed', Buffer.from(`batch ${j}`), { persistent: true });
        ch.waitForConfirms((err) => {
          must(err);
          ch.checkQueue('confirmed', (err2, q) => {
            must(err2);
            if (q.messageCount !== 250) fail(`queue holds ${q.messageCount}`);
            done('250 confirmed, 250 in the queue', [conn]);
          });
        });
      };
      one();
    });
  },
};

// Binds one server-named queue per binding list, publishes, and checks what each received.
function subscribeAndPublish(exchange, kind, bindings, messages, expected) {
  const got = bindings.map(() => []);
  const conns = [];
  let ready = 0;
  const total = expected.reduce((n, e) => n + e.length, 0);
  let received = 0;
  bindings.forEach((keys, id) => open(false, (conn, ch) => {
    conns.push(conn);
    ch.assertExchange(exchange, kind, { durable: false });
    ch.assertQueue('', { exclusive: true }, (err, q) => {
      must(err);
      keys.forEach((k) => ch.bindQueue(q.queue, exchange, k));
      ch.consume(q.queue, (msg) => {
        got[id].push(msg.content.toString());
        received += 1;
        if (received === total) {
          setTimeout(() => {
            got.forEach((g, k) => {
              if (JSON.stringify(g) !== JSON.stringify(expected[k])) fail(`subscriber ${k} got ${g}`);
            });
            done(`${total} routed`, conns);
          }, 200);
        }
      }, { noAck: true }, (err2) => {
        must(err2);
        ready += 1;
        if (ready === bindings.length) {
          open(false, (pconn, pch) => {
            conns.push(pconn);
            messages.forEach(([key, body]) => pch.publish(exchange, key, Buffer.from(body)));
          });
        }
      });
    });
  }));
}

if (!tutorials[name]) fail('unknown tutorial');
tutorials[name]();
