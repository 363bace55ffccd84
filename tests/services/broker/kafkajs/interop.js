// KafkaJS interop check for starling-broker, run by broker_kafkajs_test.
//
//   node interop.js <host:port> <messages>
//
// 1. admin: creates topic "kjs-events" with 3 partitions;
// 2. an idempotent producer (acks=all) sends <messages> messages with keys and
//    headers, in batches;
// 3. a consumer in group "kjs-group" reads them all back and checks every
//    key, value, header and partition (same key => same partition, offsets
//    increasing within a partition, no duplicates, nothing missing), then the
//    group's committed offsets are checked against the high watermarks;
// 4. more messages are sent and a second consumer in the same group must get
//    exactly those, so it resumed from the committed offsets.
// Prints one line "OK ..." and exits 0, or prints what is wrong and exits 1.
'use strict';

const { Kafka, Partitioners, logLevel } = require('kafkajs');

const [broker, countArg] = process.argv.slice(2);
const N = Number(countArg || 1000);
const TOPIC = 'kjs-events';
const GROUP = 'kjs-group';
const PARTITIONS = 3;
const SECOND = 100;

function fail(msg) {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}

// A hung client must not hang ctest: the C++ side also kills us, this only
// makes the reason readable.
const watchdog = setTimeout(() => fail('timed out'), 25000);

const kafka = new Kafka({
  clientId: 'starling-kjs',
  brokers: [broker],
  logLevel: logLevel.ERROR,
  retry: { retries: 5, initialRetryTime: 100 },
});

function expected(i) {
  return { key: `key-${i % 50}`, value: `value-${i}`, headers: { 'trace-id': `trace-${i}`, index: String(i) } };
}

async function produce(from, to) {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const batch = 200;
  for (let start = from; start < to; start += batch) {
    const messages = [];
    for (let i = start; i < Math.min(to, start + batch); ++i) messages.push(expected(i));
    const res = await producer.send({ topic: TOPIC, acks: -1, messages });
    for (const r of res) {
      if (r.errorCode !== 0) fail(`produce error ${r.errorCode} on partition ${r.partition}`);
    }
  }
  await producer.disconnect();
}

// Consumes with a fresh consumer in GROUP until `want` messages arrived, then
// waits briefly for extras (which would be duplicates or stale offsets).
async function consume(want) {
  const consumer = kafka.consumer({ groupId: GROUP, sessionTimeout: 10000, heartbeatInterval: 1000, maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topic: TOPIC, fromBeginning: true });
  const got = [];
  let resolveDone;
  const done = new Promise((r) => { resolveDone = r; });
  await consumer.run({
    autoCommitInterval: 100,
    eachMessage: async ({ partition, message }) => {
      const headers = {};
      for (const [k, v] of Object.entries(message.headers || {})) headers[k] = v.toString();
      got.push({ partition, offset: Number(message.offset), key: message.key && message.key.toString(),
                 value: message.value && message.value.toString(), headers });
      if (got.length >= want) resolveDone();
    },
  });
  if (want > 0) await done;
  await new Promise((r) => setTimeout(r, 500));
  await consumer.stop();
  await consumer.disconnect();  // commits the resolved offsets, then LeaveGroup
  return got;
}

function check(got, from, to) {
  if (got.length !== to - from) fail(`consumed ${got.length} messages, expected ${to - from}`);
  const seen = new Set();
  const partitionOfKey = new Map();
  const lastOffset = new Map();
  for (const m of got) {
    const i = Number(m.headers.index);
    if (!(i >= from && i < to)) fail(`unexpected message index ${m.headers.index} (${m.value})`);
    if (seen.has(i)) fail(`duplicate message ${i}`);
    seen.add(i);
    const e = expected(i);
    if (m.key !== e.key) fail(`message ${i}: key ${m.key}, expected ${e.key}`);
    if (m.value !== e.value) fail(`message ${i}: value ${m.value}, expected ${e.value}`);
    if (m.headers['trace-id'] !== e.headers['trace-id']) fail(`message ${i}: trace-id ${m.headers['trace-id']}`);
    if (partitionOfKey.has(m.key) && partitionOfKey.get(m.key) !== m.partition) fail(`key ${m.key} in two partitions`);
    partitionOfKey.set(m.key, m.partition);
    if (lastOffset.has(m.partition) && m.offset <= lastOffset.get(m.partition)) {
      fail(`partition ${m.partition}: offset ${m.offset} after ${lastOffset.get(m.partition)}`);
    }
    lastOffset.set(m.partition, m.offset);
  }
  return new Set(partitionOfKey.values()).size;
}

async function main() {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: PARTITIONS }], waitForLeaders: true });
  const meta = await admin.fetchTopicMetadata({ topics: [TOPIC] });
  if (meta.topics[0].partitions.length !== PARTITIONS) fail(`topic has ${meta.topics[0].partitions.length} partitions`);

  await produce(0, N);
  const first = await consume(N);
  const used = check(first, 0, N);
  if (used !== PARTITIONS) fail(`messages landed in ${used} partitions, expected ${PARTITIONS}`);

  // The committed offsets are the high watermarks: everything was consumed.
  const highs = await admin.fetchTopicOffsets(TOPIC);
  const committed = await admin.fetchOffsets({ groupId: GROUP, topics: [TOPIC] });
  let total = 0;
  for (const h of highs) {
    total += Number(h.high) - Number(h.low);
    const c = committed[0].partitions.find((p) => p.partition === h.partition);
    if (!c || c.offset !== h.high) fail(`partition ${h.partition}: committed ${c && c.offset}, high ${h.high}`);
  }
  if (total !== N) fail(`watermarks add up to ${total}, expected ${N}`);

  // A new member of the same group starts at the committed offsets.
  await produce(N, N + SECOND);
  const second = await consume(SECOND);
  check(second, N, N + SECOND);

  const groups = await admin.listGroups();
  if (!groups.groups.some((g) => g.groupId === GROUP)) fail(`ListGroups lacks ${GROUP}`);
  await admin.disconnect();
  clearTimeout(watchdog);
  console.log(`OK produced ${N + SECOND} consumed ${first.length}+${second.length} partitions ${PARTITIONS}`);
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
