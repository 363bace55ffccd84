// KafkaJS's admin API against starling-broker's group side: describeGroups of
// a live consumer group (member metadata and assignment decoded with KafkaJS's
// own AssignerProtocol), deleteGroups refused while the group has a member,
// accepted once it is empty (its committed offsets gone), and refused for a
// group that does not exist. Usage: node groups.js HOST:PORT
'use strict'

const { Kafka, logLevel, AssignerProtocol } = require('kafkajs')

const [bootstrap] = process.argv.slice(2)
const topic = 'kjs-groups'
const groupId = 'kjs-described'

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`)
}

async function until(cond, what, ms = 20000) {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(r => setTimeout(r, 50))
  }
}

async function deleteError(admin, ids) {
  try {
    await admin.deleteGroups(ids)
  } catch (e) {
    check(e.name === 'KafkaJSDeleteGroupsError', `deleteGroups error name ${e.name}: ${e.message}`)
    return e.groups.map(g => `${g.groupId}:${g.error.type}`).join(',')
  }
  return 'no error'
}

async function main() {
  const kafka = new Kafka({ clientId: 'kjs-groups-client', brokers: [bootstrap], logLevel: logLevel.NOTHING })
  const admin = kafka.admin()
  await admin.connect()
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }] })
  const producer = kafka.producer()
  await producer.connect()
  await producer.send({ topic, messages: [{ partition: 0, value: 'a' }, { partition: 1, value: 'b' }] })
  await producer.disconnect()

  // Given a consumer of the group that consumed and committed both records
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 500 })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  let consumed = 0
  await consumer.run({ autoCommitThreshold: 1, eachMessage: async () => { consumed++ } })
  await until(() => consumed === 2, 'both records')
  let committed = []
  const deadline = Date.now() + 20000
  while (Date.now() < deadline) {
    const [{ partitions }] = await admin.fetchOffsets({ groupId, topics: [topic] })
    committed = partitions
    if (partitions.every(p => p.offset === '1')) break
    await new Promise(r => setTimeout(r, 100))
  }
  check(committed.every(p => p.offset === '1'), `committed offsets ${JSON.stringify(committed)}`)

  // When KafkaJS's admin describes the group
  const { groups } = await admin.describeGroups([groupId, 'kjs-nobody'])
  check(groups.length === 2, `describeGroups returned ${groups.length} groups`)
  const [g, nobody] = groups
  // Then it reports the state, protocol and the member's decoded bytes
  check(g.groupId === groupId && g.errorCode === 0, `group ${JSON.stringify(g)}`)
  check(g.state === 'Stable', `state ${g.state}`)
  check(g.protocolType === 'consumer', `protocolType ${g.protocolType}`)
  check(g.protocol === 'RoundRobinAssigner', `protocol ${g.protocol}`)
  check(g.members.length === 1, `members ${g.members.length}`)
  const m = g.members[0]
  check(m.clientId === 'kjs-groups-client', `clientId ${m.clientId}`)
  check(m.clientHost === '/127.0.0.1', `clientHost ${m.clientHost}`)
  check(m.memberId.startsWith('kjs-groups-client-'), `memberId ${m.memberId}`)
  const metadata = AssignerProtocol.MemberMetadata.decode(m.memberMetadata)
  check(JSON.stringify(metadata.topics) === JSON.stringify([topic]), `subscription ${JSON.stringify(metadata)}`)
  const assignment = AssignerProtocol.MemberAssignment.decode(m.memberAssignment)
  const partitions = (assignment.assignment[topic] || []).slice().sort()
  check(JSON.stringify(partitions) === '[0,1]', `assignment ${JSON.stringify(assignment)}`)
  // and a group nobody knows is Dead, without an error
  check(nobody.errorCode === 0 && nobody.state === 'Dead' && nobody.members.length === 0,
    `unknown group ${JSON.stringify(nobody)}`)

  // And deleting the group while its member is in it fails NON_EMPTY_GROUP
  const busy = await deleteError(admin, [groupId])
  check(busy === `${groupId}:NON_EMPTY_GROUP`, `delete of a live group: ${busy}`)

  // When the member leaves (KafkaJS sends LeaveGroup) and the group is deleted
  await consumer.disconnect()
  const results = await admin.deleteGroups([groupId])
  check(results.length === 1 && results[0].groupId === groupId && results[0].errorCode === 0,
    `deleteGroups ${JSON.stringify(results)}`)
  // Then its offsets are gone, it is Dead, and deleting it again (or a group
  // that never existed) is GROUP_ID_NOT_FOUND
  const [{ partitions: after }] = await admin.fetchOffsets({ groupId, topics: [topic] })
  check(after.every(p => p.offset === '-1'), `offsets after delete ${JSON.stringify(after)}`)
  const { groups: [dead] } = await admin.describeGroups([groupId])
  check(dead.state === 'Dead', `state after delete ${dead.state}`)
  const gone = await deleteError(admin, [groupId])
  check(gone === `${groupId}:GROUP_ID_NOT_FOUND`, `second delete: ${gone}`)
  const listed = await admin.listGroups()
  check(!listed.groups.some(x => x.groupId === groupId), `listGroups ${JSON.stringify(listed)}`)
  await admin.disconnect()
  console.log(`OK describeGroups members 1 partitions ${partitions.join(',')} deleteGroups NON_EMPTY_GROUP NONE GROUP_ID_NOT_FOUND`)
}

main().catch(e => {
  console.error(e)
  process.exit(1)
})
