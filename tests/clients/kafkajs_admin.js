// kafkajs's admin client against `rivulet serve`: createTopics, createPartitions (and a
// refused shrink), alterConfigs and describeConfigs, deleteTopicRecords, fetchTopicOffsets,
// setOffsets/fetchOffsets, describeCluster, describeGroups and deleteGroups.
//
// Usage: node kafkajs_admin.js BOOTSTRAP
// Prints SUMMARY {json} and exits 0 when every step did what Kafka does; exits 1 with the
// reason otherwise.
const { Kafka, logLevel, ConfigResourceTypes } = require('kafkajs')

const [bootstrap] = process.argv.slice(2)
const kafka = new Kafka({ clientId: 'admin-test', brokers: [bootstrap], logLevel: logLevel.NOTHING })

function check (condition, message) {
  if (!condition) throw new Error(message)
}

async function topicConfig (admin, topic, name) {
  const described = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: [name] }],
    includeSynonyms: false
  })
  const entry = described.resources[0].configEntries.find((e) => e.configName === name)
  return entry && entry.configValue
}

async function main () {
  const admin = kafka.admin()
  await admin.connect()
  const created = await admin.createTopics({ topics: [{ topic: 'ledger', numPartitions: 2 }], waitForLeaders: true })
  check(created, 'createTopics answered false for a new topic')

  // createPartitions: 2 -> 4; shrinking to 3 is refused.
  await admin.createPartitions({ topicPartitions: [{ topic: 'ledger', count: 4 }] })
  const metadata = await admin.fetchTopicMetadata({ topics: ['ledger'] })
  const partitions = metadata.topics[0].partitions.length
  check(partitions === 4, `expected 4 partitions, found ${partitions}`)
  let shrinkError = null
  try {
    await admin.createPartitions({ topicPartitions: [{ topic: 'ledger', count: 3 }] })
  } catch (e) {
    shrinkError = e.type || e.name
  }
  check(shrinkError !== null, 'shrinking to 3 partitions was accepted')

  // alterConfigs (AlterConfigs), read back with describeConfigs.
  await admin.alterConfigs({
    validateOnly: false,
    resources: [{
      type: ConfigResourceTypes.TOPIC,
      name: 'ledger',
      configEntries: [{ name: 'retention.ms', value: '7200000' }, { name: 'compression.type', value: 'gzip' }]
    }]
  })
  const retention = await topicConfig(admin, 'ledger', 'retention.ms')
  const compression = await topicConfig(admin, 'ledger', 'compression.type')
  check(retention === '7200000', `retention.ms after alterConfigs: ${retention}`)
  check(compression === 'gzip', `compression.type after alterConfigs: ${compression}`)
  let unknownKeyError = null
  try {
    await admin.alterConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: 'ledger', configEntries: [{ name: 'no.such.key', value: '1' }] }]
    })
  } catch (e) {
    unknownKeyError = e.type || e.name
  }
  check(unknownKeyError !== null, 'an unknown config key was accepted')

  // Ten records to partition 3 (gzip-stored now), then deleteTopicRecords before offset 6.
  const producer = kafka.producer()
  await producer.connect()
  await producer.send({
    topic: 'ledger',
    messages: Array.from({ length: 10 }, (_, i) => ({ partition: 3, key: `k${i}`, value: `entry ${i}` }))
  })
  await producer.disconnect()
  await admin.deleteTopicRecords({ topic: 'ledger', partitions: [{ partition: 3, offset: '6' }] })
  const offsets = await admin.fetchTopicOffsets('ledger')
  const p3 = offsets.find((o) => o.partition === 3)
  check(p3.low === '6' && p3.high === '10', `partition 3 offsets after deleteTopicRecords: ${JSON.stringify(p3)}`)

  // The remaining records read back, from the new start.
  const consumer = kafka.consumer({ groupId: 'auditors' })
  await consumer.connect()
  await consumer.subscribe({ topic: 'ledger', fromBeginning: true })
  const values = []
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out with ${values.length} records`)), 60000)
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        values.push(`${partition}:${message.offset}:${message.value.toString()}`)
        if (values.length >= 4) {
          clearTimeout(timer)
          resolve()
        }
      }
    }).catch(reject)
  })
  await consumer.disconnect()
  check(JSON.stringify(values) === JSON.stringify(['3:6:entry 6', '3:7:entry 7', '3:8:entry 8', '3:9:entry 9']),
    `records after deleteTopicRecords: ${values}`)

  // setOffsets / fetchOffsets for the now empty group, then describeGroups and deleteGroups.
  await admin.setOffsets({ groupId: 'auditors', topic: 'ledger', partitions: [{ partition: 3, offset: '8' }] })
  const fetched = await admin.fetchOffsets({ groupId: 'auditors', topics: ['ledger'] })
  const committed = fetched[0].partitions.find((p) => p.partition === 3).offset
  check(committed === '8', `committed offset of partition 3: ${committed}`)
  const groups = await admin.describeGroups(['auditors'])
  check(groups.groups[0].state === 'Empty', `group state ${groups.groups[0].state}`)
  const cluster = await admin.describeCluster()
  check(cluster.brokers.length === 1, `brokers: ${JSON.stringify(cluster.brokers)}`)
  await admin.deleteGroups(['auditors'])
  const remaining = (await admin.listGroups()).groups.map((g) => g.groupId)
  check(!remaining.includes('auditors'), `groups after deleteGroups: ${remaining}`)

  await admin.disconnect()
  console.log('SUMMARY ' + JSON.stringify({ partitions, retention, compression, low: p3.low, high: p3.high, committed, values }))
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1) })
