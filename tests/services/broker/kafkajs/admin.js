// KafkaJS admin check for starling-broker, run by broker_kafkajs_test.
//
//   node admin.js <host:port> <topic>
//
// Through KafkaJS's admin client: createPartitions grows <topic> from 1 to 3
// partitions (and a shrink is refused with INVALID_PARTITIONS), a producer
// then writes to each of the three; deleteTopicRecords moves partition 0's
// low watermark; describeConfigs lists the topic's and the broker's configs;
// alterConfigs sets retention.ms (and an unknown config is INVALID_CONFIG).
// Prints "OK admin" and exits 0, or prints what is wrong and exits 1.
'use strict';

const { Kafka, ConfigResourceTypes, logLevel } = require('kafkajs');

const [broker, topic] = process.argv.slice(2);

function fail(msg) {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}

function check(cond, msg) {
  if (!cond) fail(msg);
}

const watchdog = setTimeout(() => fail('timed out'), 50000);

const kafka = new Kafka({
  clientId: 'starling-kjs-admin',
  brokers: [broker],
  logLevel: logLevel.NOTHING,
  retry: { retries: 3, initialRetryTime: 100 },
});

// The Kafka error type of what `fn` threw (KafkaJS wraps some in a cause).
async function errorType(fn) {
  try {
    await fn();
  } catch (e) {
    return e.type || (e.cause && e.cause.type) || e.message;
  }
  return 'NONE';
}

// `names` undefined: every config (KafkaJS sends an empty list as null).
async function topicConfigs(admin, names) {
  const resource = { type: ConfigResourceTypes.TOPIC, name: topic };
  if (names) resource.configNames = names;
  const { resources } = await admin.describeConfigs({ includeSynonyms: false, resources: [resource] });
  check(resources.length === 1 && resources[0].errorCode === 0, `describeConfigs: ${JSON.stringify(resources)}`);
  return Object.fromEntries(resources[0].configEntries.map((e) => [e.configName, e]));
}

async function main() {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });

  // createPartitions
  await admin.createPartitions({ topicPartitions: [{ topic, count: 3 }] });
  const md = await admin.fetchTopicMetadata({ topics: [topic] });
  check(md.topics[0].partitions.length === 3, `partitions after createPartitions: ${md.topics[0].partitions.length}`);
  const shrink = await errorType(() => admin.createPartitions({ topicPartitions: [{ topic, count: 2 }] }));
  check(shrink === 'INVALID_PARTITIONS', `shrink gave ${shrink}`);

  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  for (let p = 0; p < 3; ++p) {
    const messages = [];
    for (let i = 0; i < 10; ++i) messages.push({ value: `p${p}-${i}`, partition: p });
    const [meta] = await producer.send({ topic, acks: -1, messages });
    check(meta.partition === p && meta.errorCode === 0, `send to ${p}: ${JSON.stringify(meta)}`);
  }
  await producer.disconnect();

  // deleteTopicRecords
  await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '4' }] });
  const offsets = await admin.fetchTopicOffsets(topic);
  const p0 = offsets.find((o) => o.partition === 0);
  check(p0.low === '4' && p0.high === '10', `partition 0 after deleteTopicRecords: ${JSON.stringify(p0)}`);

  // describeConfigs: the defaults, and the broker's own
  let configs = await topicConfigs(admin);
  for (const name of ['max.message.bytes', 'retention.ms', 'retention.bytes', 'segment.bytes', 'cleanup.policy']) {
    check(name in configs, `describeConfigs lacks ${name}: ${Object.keys(configs)}`);
  }
  check(configs['retention.ms'].configValue === '-1' && configs['retention.ms'].isDefault,
    `retention.ms: ${JSON.stringify(configs['retention.ms'])}`);
  const { resources: brokers } = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [{ type: ConfigResourceTypes.BROKER, name: '0' }],
  });
  const brokerNames = brokers[0].configEntries.map((e) => e.configName);
  check(brokerNames.includes('message.max.bytes') && brokerNames.includes('log.retention.ms'),
    `broker configs: ${brokerNames}`);

  // alterConfigs
  await admin.alterConfigs({
    validateOnly: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'retention.ms', value: '3600000' }] }],
  });
  configs = await topicConfigs(admin, ['retention.ms']);
  check(Object.keys(configs).length === 1, `configNames filter: ${Object.keys(configs)}`);
  check(configs['retention.ms'].configValue === '3600000' && !configs['retention.ms'].isDefault,
    `retention.ms after alterConfigs: ${JSON.stringify(configs['retention.ms'])}`);
  const unknown = await errorType(() => admin.alterConfigs({
    validateOnly: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'retention.msec', value: '1' }] }],
  }));
  check(unknown === 'INVALID_CONFIG', `unknown config gave ${unknown}`);

  await admin.disconnect();
  clearTimeout(watchdog);
  console.log('OK admin');
}

main().catch((e) => fail(e.stack || e));
