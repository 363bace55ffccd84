'use strict';
// Interop with the newer librdkafka generation: @confluentinc/kafka-javascript
// bundles a librdkafka (2.x, several releases after Debian's 2.0.2), built
// from the npm package's own source by `npm ci` (see ../CMakeLists.txt).
// Through its KafkaJS-style API, with librdkafka's own property names:
//   admin: createTopics (3 partitions per codec), listTopics;
//   per codec (none, gzip, snappy, lz4, zstd): an idempotent producer sends
//   COUNT keyed records with a header; a consumer group reads them all back,
//   checks every key, value and header, and commits; a second consumer of the
//   same group then finds nothing left to read.
// Prints "OK librdkafka <version> codecs 5 records <n> value bytes <b>" and
// exits 0, or prints "FAIL <what>" and exits 1. Usage: node interop.js BOOTSTRAP COUNT
const { Kafka } = require('@confluentinc/kafka-javascript').KafkaJS;
const { librdkafkaVersion } = require('@confluentinc/kafka-javascript');

const [bootstrap, countArg] = process.argv.slice(2);
const count = Number(countArg || 1000);
const codecs = ['none', 'gzip', 'snappy', 'lz4', 'zstd'];

function fail(what) {
  console.log('FAIL ' + what);
  process.exit(1);
}

// About 400 bytes of text that compresses, different per record.
function valueOf(i) {
  return `record ${i} `.padEnd(400, `ride telemetry speed=${i % 50} battery=${i % 100} `);
}

function timeout(ms, what) {
  return new Promise((_, reject) => setTimeout(() => reject(new Error('timed out: ' + what)), ms));
}

async function consumeAll(kafka, topic, group, expected) {
  const consumer = kafka.consumer({
    'bootstrap.servers': bootstrap,
    'group.id': group,
    'auto.offset.reset': 'earliest',
    'enable.auto.commit': false,
    'log_level': 0,
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic] });
  const seen = new Map();
  let done;
  const all = new Promise((resolve) => { done = resolve; });
  if (expected === 0) done();
  consumer.run({
    eachMessage: async ({ partition, message }) => {
      const key = message.key.toString();
      const i = Number(key.slice(1));
      if (message.value.toString() !== valueOf(i)) fail(`${topic}: value of ${key} differs`);
      const h = message.headers && message.headers.i;
      if (!h || h.toString() !== String(i)) fail(`${topic}: header of ${key} is ${h}`);
      if (seen.has(key)) fail(`${topic}: ${key} read twice`);
      seen.set(key, partition);
      await consumer.commitOffsets([{ topic, partition, offset: String(Number(message.offset) + 1) }]);
      if (seen.size === expected) done();
    },
  });
  // Expected 0: wait a while to see that nothing comes.
  await Promise.race([all, timeout(60000, `${topic}: ${seen.size} of ${expected} read`)]);
  if (expected === 0) await new Promise((r) => setTimeout(r, 3000));
  await consumer.disconnect();
  return seen;
}

async function main() {
  const kafka = new Kafka({});
  const admin = kafka.admin({ 'bootstrap.servers': bootstrap, 'log_level': 0 });
  await admin.connect();
  const topics = codecs.map((c) => `cjs-${c}`);
  await admin.createTopics({ topics: topics.map((topic) => ({ topic, numPartitions: 3 })) });
  const listed = await admin.listTopics();
  for (const t of topics) if (!listed.includes(t)) fail(`listTopics lacks ${t}: ${listed}`);
  await admin.disconnect();

  let bytes = 0;
  let records = 0;
  for (const codec of codecs) {
    const topic = `cjs-${codec}`;
    const producer = kafka.producer({
      'bootstrap.servers': bootstrap,
      'compression.codec': codec,
      'enable.idempotence': true,
      'linger.ms': 20,
      'log_level': 0,
    });
    await producer.connect();
    const messages = [];
    for (let i = 0; i < count; i++) {
      messages.push({ key: `k${i}`, value: valueOf(i), headers: { i: String(i) } });
      bytes += valueOf(i).length;
    }
    const reports = await producer.send({ topic, messages });
    await producer.disconnect();
    // One report per partition written to (as KafkaJS's RecordMetadata).
    const failed = reports.filter((r) => r.errorCode !== 0);
    if (reports.length === 0 || failed.length) fail(`${topic}: send reported ${JSON.stringify(reports)}`);
    const seen = await consumeAll(kafka, topic, `cjs-group-${codec}`, count);
    if (new Set(seen.values()).size !== 3) fail(`${topic}: read from partitions ${[...new Set(seen.values())]}`);
    records += seen.size;
    // The group's commits hold: a new member of it has nothing to read.
    const again = await consumeAll(kafka, topic, `cjs-group-${codec}`, 0);
    if (again.size !== 0) fail(`${topic}: ${again.size} records read again after the commit`);
  }
  console.log(`OK librdkafka ${librdkafkaVersion} codecs ${codecs.length} records ${records} value bytes ${bytes}`);
  process.exit(0);
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
