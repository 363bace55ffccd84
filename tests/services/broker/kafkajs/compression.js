// KafkaJS compression check for starling-broker, run by broker_kafkajs_test.
//
//   node compression.js <host:port> <topic> <messages>
//
// Sends <messages> compressible values to partition 0 of <topic> in
// GZIP-compressed batches (the one codec KafkaJS 2.2.4 has without plugins),
// then reads them back from the beginning and checks each value and offset.
// Prints "OK produced N consumed N value bytes B" and exits 0, or prints what
// is wrong and exits 1. The C++ side checks the codec of the stored batches.
'use strict';

const { Kafka, CompressionTypes, logLevel } = require('kafkajs');

const [broker, topic, countArg] = process.argv.slice(2);
const N = Number(countArg || 1000);

function fail(msg) {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}

const watchdog = setTimeout(() => fail('timed out'), 25000);

const kafka = new Kafka({
  clientId: 'starling-kjs-gzip',
  brokers: [broker],
  logLevel: logLevel.ERROR,
  retry: { retries: 5, initialRetryTime: 100 },
});

// About 400 bytes, compressible even alone, like compression_test.cc's readings.
function valueOf(i) {
  const samples = [];
  for (let k = 0; k < 60; ++k) samples.push(`${20 + ((i + Math.floor(k / 20)) % 3)}.5`);
  return `{"device":"sensor-${1000 + (i % 50)}","unit":"celsius","site":"north-field","samples":[${samples.join(',')}],"seq":${i}}`;
}

async function main() {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
  await admin.disconnect();

  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const batch = 500;
  for (let start = 0; start < N; start += batch) {
    const messages = [];
    for (let i = start; i < Math.min(N, start + batch); ++i) messages.push({ value: valueOf(i), partition: 0 });
    const res = await producer.send({ topic, acks: -1, compression: CompressionTypes.GZIP, messages });
    for (const r of res) {
      if (r.errorCode !== 0) fail(`produce error ${r.errorCode}`);
    }
  }
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: 'kjs-gzip', maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got = [];
  let resolveDone;
  const done = new Promise((r) => { resolveDone = r; });
  await consumer.run({
    eachMessage: async ({ message }) => {
      got.push({ offset: Number(message.offset), value: message.value.toString() });
      if (got.length >= N) resolveDone();
    },
  });
  await done;
  await consumer.disconnect();
  if (got.length !== N) fail(`consumed ${got.length} of ${N}`);
  got.sort((a, b) => a.offset - b.offset);
  let bytes = 0;
  for (let i = 0; i < N; ++i) {
    if (got[i].offset !== i || got[i].value !== valueOf(i)) fail(`record ${i}: offset ${got[i].offset} value ${got[i].value}`);
    bytes += Buffer.byteLength(valueOf(i));
  }
  clearTimeout(watchdog);
  console.log(`OK produced ${N} consumed ${got.length} value bytes ${bytes}`);
}

main().catch((e) => fail(e.stack || String(e)));
