// kafkajs against `rivulet serve`: the getting-started example from the kafkajs README
// (producer to `test-topic`, consumer group `test-group` from the beginning).
//
// Usage: node kafkajs_smoke.js BOOTSTRAP COUNT
// Prints OK and exits 0 when every message came back in order.
const { Kafka, logLevel } = require('kafkajs')

const [bootstrap, countText] = process.argv.slice(2)
const count = parseInt(countText, 10)

const kafka = new Kafka({ clientId: 'my-app', brokers: [bootstrap], logLevel: logLevel.WARN })

async function main () {
  const producer = kafka.producer()
  await producer.connect()
  for (let i = 0; i < count; i++) {
    await producer.send({
      topic: 'test-topic',
      messages: [{ value: `Hello KafkaJS user! ${i}` }]
    })
  }
  await producer.disconnect()

  const consumer = kafka.consumer({ groupId: 'test-group' })
  await consumer.connect()
  await consumer.subscribe({ topic: 'test-topic', fromBeginning: true })
  const values = []
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out with ${values.length} messages`)), 90000)
    consumer.run({
      eachMessage: async ({ message }) => {
        values.push(message.value.toString())
        if (values.length >= count) {
          clearTimeout(timer)
          resolve()
        }
      }
    }).catch(reject)
  })
  await consumer.disconnect()
  for (let i = 0; i < count; i++) {
    if (values[i] !== `Hello KafkaJS user! ${i}`) {
      throw new Error(`message ${i} is ${values[i]}`)
    }
  }
  console.log('OK', values.length)
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1) })
