'use strict';
// Consume throughput of the newer librdkafka generation (as bundled by
// @confluentinc/kafka-javascript, the one tests/services/broker/confluent-js
// pins) from starling-broker, against librdkafka's own mock cluster in the
// same run: the same client, the same messages, the same settings. The newer
// client may keep more than one Fetch in flight, which the broker bench's
// Debian librdkafka 2.0.2 does not.
//
// Usage: node consume_newer_client.js BROKER_BOOTSTRAP [MESSAGES] [BYTES]
// Run by bench/broker/consume-newer-client, which starts the broker. For each
// cluster: an idempotent producer loads MESSAGES values of BYTES into a topic
// of 4 partitions (the mock's default), then a consumer (no group commits, batches of
// 1000 from consume()) reads them all; the read is timed. The mock cluster
// lives in the producer's client (test.mock.num.brokers=1), whose address the
// client logs. Prints one JSON line per cluster:
//   {"cluster":..., "messages":..., "seconds":..., "msgs_per_s":..., "client_cpu_s":...}
const Kafka = require('@confluentinc/kafka-javascript');

const [bootstrap, messagesArg, bytesArg, partitionsArg] = process.argv.slice(2);
if (!bootstrap) {
  console.error('usage: node consume_newer_client.js BROKER_BOOTSTRAP [MESSAGES] [BYTES]');
  process.exit(2);
}
const messages = Number(messagesArg || 60000);  // ~3 MiB per mock partition
const bytes = Number(bytesArg || 200);
const partitions = 4;  // the mock cluster's default (it has no CreateTopics)
if (partitionsArg && Number(partitionsArg) !== partitions) {
  console.error('the mock cluster creates topics of 4 partitions only');
  process.exit(2);
}
const value = Buffer.alloc(bytes, 'x');

function fail(what) {
  console.error('FAIL ' + what);
  process.exit(1);
}

function connect(client) {
  return new Promise((resolve, reject) => client.connect({ timeout: 10000 }, (err) => (err ? reject(err) : resolve())));
}

// A producer that loads `messages` values into `topic`; with `mock` it starts
// librdkafka's mock cluster first and resolves with its address as well.
async function load(brokers, topic, mock) {
  let mockAddress = null;
  const conf = {
    'metadata.broker.list': brokers,
    'enable.idempotence': true,
    'linger.ms': 5,
    'batch.num.messages': 10000,
    'queue.buffering.max.messages': 1000000,
    'dr_cb': false,
    'event_cb': true,
  };
  if (mock) {
    conf['test.mock.num.brokers'] = 1;
    conf['test.mock.broker.rtt'] = 0;
  }
  const producer = new Kafka.Producer(conf);
  producer.on('event.log', (log) => {
    const m = /replaced with ([0-9.]+:[0-9]+)/.exec(log.message);
    if (m) mockAddress = m[1];
  });
  await connect(producer);
  if (mock) {
    for (let i = 0; i < 100 && !mockAddress; ++i) await new Promise((r) => setTimeout(r, 20));
    if (!mockAddress) fail('the mock cluster did not log its address');
  }
  // The mock has no CreateTopics: it creates a topic of its default 4
  // partitions on first use, so the partition count is fixed at 4.
  if (!mock) {
    const admin = Kafka.AdminClient.create({ 'bootstrap.servers': brokers });
    await new Promise((resolve, reject) =>
      admin.createTopic({ topic, num_partitions: partitions, replication_factor: 1 }, 10000, (err) =>
        err ? reject(err) : resolve()));
    admin.disconnect();
  }
  for (let i = 0; i < messages; ++i) {
    for (;;) {
      try {
        producer.produce(topic, i % partitions, value, null);
        break;
      } catch (e) {
        producer.poll();
        await new Promise((r) => setTimeout(r, 1));
      }
    }
  }
  await new Promise((resolve, reject) => producer.flush(60000, (err) => (err ? reject(err) : resolve())));
  return { producer, address: mock ? mockAddress : brokers };
}

async function consume(brokers, topic, onFirst) {
  const consumer = new Kafka.KafkaConsumer(
    {
      'metadata.broker.list': brokers,
      'group.id': 'bench-' + topic,
      'enable.auto.commit': false,
      'fetch.max.bytes': 52428800,
      'max.partition.fetch.bytes': 1048576,
    },
    { 'auto.offset.reset': 'earliest' });
  await connect(consumer);
  consumer.setDefaultConsumeTimeout(100);
  consumer.subscribe([topic]);
  // Timed from the first message to the last: joining the group is not
  // part of reading (the mock has no rebalance delay; the broker runs with 0).
  let cpu0 = null;
  let t0 = null;
  let got = 0;
  const deadline = Date.now() + 300000;
  while (got < messages) {
    if (Date.now() > deadline) fail(`${brokers}: read ${got} of ${messages} in 300 s`);
    const batch = await new Promise((resolve, reject) =>
      consumer.consume(1000, (err, msgs) => (err ? reject(err) : resolve(msgs))));
    if (batch.length > 0 && t0 === null) {
      t0 = process.hrtime.bigint();
      cpu0 = process.cpuUsage();
      if (onFirst) onFirst();
    }
    got += batch.length;
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  await new Promise((resolve) => consumer.disconnect(resolve));
  return { seconds, clientCpu: (cpu.user + cpu.system) / 1e6 };
}

async function run(cluster, brokers, mock) {
  const topic = `consume-${cluster}-${Date.now()}`;
  const { producer, address } = await load(brokers, topic, mock);
  // The runner reads the broker's CPU from the first message to the cluster's result line.
  const r = await consume(address, topic, mock ? null : () => console.log(JSON.stringify({ phase: 'ours-read' })));
  console.log(JSON.stringify({
    cluster, messages, bytes, partitions,
    seconds: r.seconds, msgs_per_s: messages / r.seconds, client_cpu_s: r.clientCpu,
  }));
  await new Promise((resolve) => producer.disconnect(resolve));
}

(async () => {
  await run('mock', 'mock', true);
  await run('ours', bootstrap, false);
  console.log(JSON.stringify({ librdkafka: Kafka.librdkafkaVersion }));
})().catch((e) => fail(e.stack || String(e)));
