// kafkajs transactions against `rivulet serve`: a committed and an aborted transaction from a
// transactional producer, then a consume-transform-produce step whose transactions carry the
// consumer group's offsets (transaction.sendOffsets). A read_committed consumer must see
// exactly the committed values, a read_uncommitted one also the aborted ones, and
// admin.fetchOffsets must return what sendOffsets committed.
//
// Usage: node kafkajs_transactions.js BOOTSTRAP
// Prints `SUMMARY {json}` and exits 0 when everything matched; exits 1 with the mismatch
// otherwise.
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'
const { Kafka, logLevel } = require('kafkajs')

const [bootstrap] = process.argv.slice(2)
const INPUT = 'js-txn-in'
const OUTPUT = 'js-txn-out'
const GROUP = 'js-txn-copier'
const INPUTS = 10
const STEP_TIMEOUT_MS = 60000

const kafka = new Kafka({ clientId: 'txn-test', brokers: [bootstrap], logLevel: logLevel.WARN })

// The whole script is bounded even if a client call hangs.
setTimeout(() => {
  console.error('FAIL: kafkajs_transactions.js did not finish within 150 s')
  process.exit(1)
}, 150000).unref()

function check (condition, message) {
  if (!condition) throw new Error(`MISMATCH: ${message}`)
}

function same (got, expected, what) {
  check(JSON.stringify(got) === JSON.stringify(expected),
    `${what}: got ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`)
}

// Runs `start(resolve, reject)` and waits for it, failing after STEP_TIMEOUT_MS.
function step (what, start) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), STEP_TIMEOUT_MS)
    start(v => { clearTimeout(timer); resolve(v) }, e => { clearTimeout(timer); reject(e) })
  })
}

// Values per partition of OUTPUT from the beginning, once `expected` arrived.
async function readOutput (groupId, readUncommitted, expected) {
  const consumer = kafka.consumer({ groupId, readUncommitted, maxWaitTimeInMs: 500 })
  await consumer.connect()
  await consumer.subscribe({ topic: OUTPUT, fromBeginning: true })
  const seen = { 0: [], 1: [] }
  let count = 0
  await step(`${groupId} reading ${expected} values`, (resolve, reject) => {
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        seen[partition].push(message.value.toString())
        count++
        if (count >= expected) resolve()
      }
    }).catch(reject)
  })
  await consumer.disconnect()
  return seen
}

// Copies INPUT to OUTPUT (same partition, value `copy-<value>`): one transaction per batch,
// carrying the group's next offsets through sendOffsets. Returns the offsets sent.
async function copyInTransactions (producer) {
  const consumer = kafka.consumer({ groupId: GROUP, readUncommitted: false, maxWaitTimeInMs: 500 })
  await consumer.connect()
  await consumer.subscribe({ topic: INPUT, fromBeginning: true })
  const sentOffsets = {}
  let copied = 0
  await step('the consume-transform-produce copy', (resolve, reject) => {
    consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        if (batch.messages.length === 0) return
        const next = (BigInt(batch.messages[batch.messages.length - 1].offset) + 1n).toString()
        const transaction = await producer.transaction()
        try {
          await transaction.send({
            topic: OUTPUT,
            messages: batch.messages.map(m => ({ partition: batch.partition, value: `copy-${m.value}` }))
          })
          await transaction.sendOffsets({
            consumerGroupId: GROUP,
            topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: next }] }]
          })
          await transaction.commit()
        } catch (e) {
          await transaction.abort().catch(() => {})
          reject(e)
          throw e
        }
        sentOffsets[batch.partition] = next
        copied += batch.messages.length
        if (copied >= INPUTS) resolve()
      }
    }).catch(reject)
  })
  await consumer.disconnect()
  check(copied === INPUTS, `copied ${copied} input records, expected ${INPUTS}`)
  return sentOffsets
}

async function main () {
  const admin = kafka.admin()
  await admin.connect()
  await admin.createTopics({
    waitForLeaders: true,
    topics: [{ topic: INPUT, numPartitions: 2 }, { topic: OUTPUT, numPartitions: 2 }]
  })

  // Input: in-<i> on partition i % 2, written without a transaction.
  const plain = kafka.producer()
  await plain.connect()
  await plain.send({
    topic: INPUT,
    messages: Array.from({ length: INPUTS }, (_, i) => ({ partition: i % 2, value: `in-${i}` }))
  })
  await plain.disconnect()

  const producer = kafka.producer({ transactionalId: 'js-txn-producer', idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  const committedTxn = await producer.transaction()
  await committedTxn.send({
    topic: OUTPUT,
    messages: [0, 1, 2, 3].map(i => ({ partition: i % 2, value: `c1-${i}` }))
  })
  await committedTxn.commit()
  // send resolves once the records are acknowledged: they are in the log before the abort.
  const abortedTxn = await producer.transaction()
  await abortedTxn.send({
    topic: OUTPUT,
    messages: [0, 1].map(i => ({ partition: i, value: `a2-${i}` }))
  })
  await abortedTxn.abort()

  const sentOffsets = await copyInTransactions(producer)
  await producer.disconnect()

  const copies = p => Array.from({ length: INPUTS }, (_, i) => i).filter(i => i % 2 === p).map(i => `copy-in-${i}`)
  const expectedCommitted = { 0: ['c1-0', 'c1-2', ...copies(0)], 1: ['c1-1', 'c1-3', ...copies(1)] }
  const expectedUncommitted = {
    0: ['c1-0', 'c1-2', 'a2-0', ...copies(0)],
    1: ['c1-1', 'c1-3', 'a2-1', ...copies(1)]
  }
  const committed = await readOutput('js-txn-read-committed', false, 4 + INPUTS)
  const uncommitted = await readOutput('js-txn-read-uncommitted', true, 6 + INPUTS)

  const fetched = await admin.fetchOffsets({ groupId: GROUP, topics: [INPUT] })
  const fetchedOffsets = {}
  for (const { partition, offset } of fetched.find(t => t.topic === INPUT).partitions) {
    fetchedOffsets[partition] = offset
  }
  await admin.disconnect()

  const summary = { committed, uncommitted, sentOffsets, fetchedOffsets }
  console.log('SUMMARY', JSON.stringify(summary))
  same(committed, expectedCommitted, 'read_committed values per partition')
  same(uncommitted, expectedUncommitted, 'read_uncommitted values per partition')
  same(sentOffsets, { 0: String(INPUTS / 2), 1: String(INPUTS / 2) }, 'offsets sent with the transactions')
  same(fetchedOffsets, sentOffsets, 'admin.fetchOffsets against the offsets sent')
  console.log('OK transactions')
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1) })
