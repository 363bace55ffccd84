// Prints a consumer group's committed offsets on one topic, as KafkaJS
// 2.2.4's admin reads them (OffsetFetch): [{"partition":0,"offset":42}, ...],
// offset -1 where the group never committed.
//   node offsets.js BOOTSTRAP GROUP TOPIC
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, groupId, topic] = process.argv.slice(2);

(async () => {
  const kafka = new Kafka({ clientId: 'starling-lag-check', brokers: [bootstrap], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const res = await admin.fetchOffsets({ groupId, topics: [topic] });
  const parts = res.find((t) => t.topic === topic).partitions;
  console.log(JSON.stringify(parts.map((p) => ({ partition: p.partition, offset: Number(p.offset) }))));
  await admin.disconnect();
})().catch((e) => {
  console.error(`offsets.js: ${e.message}`);
  process.exit(1);
});
