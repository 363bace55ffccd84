#!/usr/bin/python3
"""Produces compressible records with confluent-kafka (Debian's 1.7.0 over the
system librdkafka) to a starling-broker, then reads them back and checks each.

usage: compression_roundtrip.py BOOTSTRAP TOPIC CODEC COUNT

Prints "OK produced N consumed N value bytes B" and exits 0, or says what was wrong and
exits 1. The caller (compression_test.cc) checks the codec of the batches the
broker stored on disk.
"""
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition


def value_of(i):
    # Compressible, like the pipeline's JSON readings, and about 400 bytes, so
    # that even a batch of one record compresses (a client sends a batch
    # uncompressed when compressing would make it larger).
    samples = ','.join('%d.5' % (20 + (i + k // 20) % 3) for k in range(60))
    return ('{"device":"sensor-%d","unit":"celsius","site":"north-field","samples":[%s],"seq":%d}'
            % (1000 + i % 50, samples, i)).encode()


def main():
    bootstrap, topic, codec, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))

    producer = Producer({
        'bootstrap.servers': bootstrap,
        'broker.address.family': 'v4',
        'compression.codec': codec,
        'linger.ms': 20,
        'acks': 'all',
    })
    for i in range(count):
        while True:
            try:
                producer.produce(topic, value_of(i), partition=0, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
    remaining = producer.flush(30)
    if remaining or errors:
        print('produce failed: %d undelivered, errors %s' % (remaining, errors[:3]))
        return 1

    consumer = Consumer({
        'bootstrap.servers': bootstrap,
        'broker.address.family': 'v4',
        'group.id': 'python-compression',
        'enable.auto.commit': False,
        'auto.offset.reset': 'earliest',
    })
    consumer.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + 30
    while len(got) < count and time.time() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                print('consume error: %s' % msg.error())
                return 1
            continue
        got.append((msg.offset(), msg.value()))
    consumer.close()
    if len(got) != count:
        print('consumed %d of %d' % (len(got), count))
        return 1
    for i, (offset, value) in enumerate(got):
        if offset != i or value != value_of(i):
            print('record %d: offset %d value %r' % (i, offset, value[:80]))
            return 1
    print('OK produced %d consumed %d value bytes %d' % (count, len(got), sum(len(value_of(i)) for i in range(count))))
    return 0


if __name__ == '__main__':
    sys.exit(main())
