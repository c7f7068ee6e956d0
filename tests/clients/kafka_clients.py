"""Stock Python Kafka clients against a shardlog broker's Kafka listener.

Usage: kafka_clients.py BOOTSTRAP SCENARIO [ARGS]
Scenarios: confluent (AdminClient create and delete, producers with acks=all
and acks=1, plain and with each compression codec, a consumer of assigned partitions from the beginning and from a
given offset), kafka-python (a non-idempotent producer, a consumer that
checks CRCs), and failover TOPIC SECONDS KILLED_FILE (an idempotent
confluent-kafka producer with acks=all for SECONDS while the test kills
the partition's leader and creates KILLED_FILE; then every acknowledged
message must be stored at its offset, none twice, in order, and some must
have been acknowledged after the kill), groups (group consumers of both libraries: commit and resume,
two members splitting partitions and taking over on leave and on death),
idempotent (confluent-kafka's and
kafka-python's idempotent producers store every message once; a
transactional producer is refused), commits (offsets committed with
metadata outside membership, read back and resumed from, by both
libraries), sasl CA USER PASSWORD TOPIC DENIED (over SASL_SSL with SCRAM-SHA-256
and -512: produce and consume TOPIC; a wrong password is refused with an
authentication error and no data; DENIED, which USER has no ACL for, is
refused with TOPIC_AUTHORIZATION_FAILED both ways). Exits non-zero, saying why, on any difference.
"""
import sys
import time

BOOT, SCENARIO = sys.argv[1], sys.argv[2]


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def confluent():
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": BOOT})
    topic = "ck"
    for t, f in admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1,
                                              config={"retention.ms": "3600000"})]).items():
        f.result(timeout=15)
    if topic not in admin.list_topics(timeout=10).topics:
        fail("the created topic is not listed")
    # Its settings: the one it set, and the broker's defaults.
    from confluent_kafka.admin import ConfigResource, ConfigSource
    for res, f in admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).items():
        configs = f.result(timeout=15)
        ret = configs.get("retention.ms")
        if ret is None or ret.value != "3600000" or ret.source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value:
            fail(f"retention.ms described as {ret!r}")
        seg = configs.get("segment.bytes")
        if seg is None or seg.source != ConfigSource.DEFAULT_CONFIG.value or int(seg.value) <= 0:
            fail(f"segment.bytes described as {seg!r}")

    sent = {}
    errors = []

    def report(err, msg, headers):
        if err is not None:
            errors.append(err)
        else:
            # A delivery report carries no headers: keep the ones sent.
            sent[(msg.partition(), msg.offset())] = (msg.key(), msg.value(), headers)

    # Plain, and compressed (stored as sent, inflated by the consumer).
    producers = [("all", "none"), ("1", "none"), ("all", "zstd"), ("1", "lz4"), ("all", "snappy"), ("1", "gzip")]
    for acks, codec in producers:
        p = Producer({"bootstrap.servers": BOOT, "acks": acks, "linger.ms": 5, "compression.type": codec})
        for i in range(300):
            key = f"key-{i % 7}".encode()
            headers = [("n", str(i).encode())]
            p.produce(topic, key=key, value=f"{acks}-{codec}-{i}-".encode() * 4, headers=headers,
                      on_delivery=lambda err, msg, h=headers: report(err, msg, h))
        if p.flush(30) != 0:
            fail("the producer did not deliver everything")
    if errors:
        fail(f"delivery errors: {errors[:3]}")
    if len(sent) != 300 * len(producers):
        fail(f"{len(sent)} deliveries reported, want {300 * len(producers)}")

    def consume(assignments, want):
        c = Consumer({"bootstrap.servers": BOOT, "group.id": "ck-reader", "enable.auto.commit": False,
                      "enable.partition.eof": True})
        c.assign(assignments)
        got, eofs, deadline = {}, set(), time.time() + 30
        while len(eofs) < len(assignments) and time.time() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eofs.add(m.partition())
                    continue
                fail(f"consumer error: {m.error()}")
            got[(m.partition(), m.offset())] = (m.key(), m.value(), m.headers())
        c.close()
        if got != want:
            missing = set(want) - set(got)
            extra = set(got) - set(want)
            differ = [(k, got[k], want[k]) for k in sorted(set(got) & set(want)) if got[k] != want[k]]
            fail(f"consumed {len(got)}, want {len(want)}; missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}, differ {differ[:2]}")

    consume([TopicPartition(topic, p, -2) for p in range(3)], sent)  # OFFSET_BEGINNING
    # From a given offset of partition 0.
    start = 5
    consume([TopicPartition(topic, 0, start)], {k: v for k, v in sent.items() if k[0] == 0 and k[1] >= start})

    for t, f in admin.delete_topics([topic]).items():
        f.result(timeout=15)
    deadline = time.time() + 10
    while topic in admin.list_topics(timeout=10).topics:
        if time.time() > deadline:
            fail("the deleted topic is still listed")
        time.sleep(0.2)
    print("confluent-kafka: ok")


def kafka_python():
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = "kp"
    admin = KafkaAdminClient(bootstrap_servers=BOOT)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.close()
    p = KafkaProducer(bootstrap_servers=BOOT, acks="all", enable_idempotence=False)
    futures = [p.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), headers=[("h", b"x")], partition=0)
               for i in range(200)]
    p.flush(30)
    offsets = [f.get(timeout=30).offset for f in futures]
    if offsets != list(range(200)):
        fail(f"offsets {offsets[:5]}..., want 0..199")
    p.close()
    c = KafkaConsumer(bootstrap_servers=BOOT, enable_auto_commit=False, consumer_timeout_ms=5000)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = [(m.offset, m.key, m.value, m.headers) for m in c]
    c.close()
    want = [(i, f"k{i}".encode(), f"v{i}".encode(), [("h", b"x")]) for i in range(200)]
    if got != want:
        fail(f"kafka-python read {len(got)} records, first {got[:2]}, want {want[:2]}")
    print("kafka-python: ok")


def failover():
    import os
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

    topic, seconds, killed_file = sys.argv[3], float(sys.argv[4]), sys.argv[5]
    acked, errors = {}, []
    state = {"after_kill": 0}

    def report(err, msg):
        if err is not None:
            errors.append(str(err))
            return
        acked[msg.offset()] = msg.value()
        if os.path.exists(killed_file):
            state["after_kill"] += 1

    # Idempotent: a batch whose answer the killed leader never sent is sent
    # again to the new leader, which must know it if it was stored.
    p = Producer({"bootstrap.servers": BOOT, "acks": "all", "linger.ms": 2, "message.timeout.ms": 60000,
                  "retry.backoff.ms": 100, "topic.metadata.refresh.interval.ms": 1000, "enable.idempotence": True})
    end, i = time.time() + seconds, 0
    while time.time() < end:
        try:
            p.produce(topic, value=f"m{i}".encode(), partition=0, on_delivery=report)
            i += 1
        except BufferError:
            p.poll(0.05)
        p.poll(0)
        time.sleep(0.001)
    if p.flush(90) != 0:
        fail("the producer did not settle every message")
    if not acked:
        fail(f"nothing was acknowledged; errors {errors[:3]}")
    if state["after_kill"] == 0:
        fail(f"nothing was acknowledged after the leader was killed; errors {errors[:3]}")

    c = Consumer({"bootstrap.servers": BOOT, "group.id": "failover-check", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, 0, -2)])
    stored, deadline = {}, time.time() + 60
    while time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                break
            fail(f"consumer error: {m.error()}")
        stored[m.offset()] = m.value()
    c.close()
    lost = [(o, v) for o, v in acked.items() if stored.get(o) != v]
    values = list(stored.values())
    duplicated = len(values) - len(set(values))
    if lost:
        fail(f"{len(lost)} of {len(acked)} acknowledged messages are not stored at their offsets: {lost[:5]}")
    if duplicated:
        fail(f"{duplicated} messages are stored twice or more")
    if values != sorted(values, key=lambda v: int(v[1:])):
        fail("the messages are not stored in the order they were sent")
    print(f"failover: {len(acked)} acknowledged, {state['after_kill']} after the kill, {len(errors)} refused, "
          f"0 lost, 0 duplicated, in order")


def groups():
    """Kafka's group protocol with stock clients: a confluent-kafka group
    consumer commits, is restarted and resumes at its committed offsets;
    two members split a topic's partitions and one takes over the other's
    when it leaves, and when it dies (its session times out); a
    kafka-python group consumer with its defaults reads what
    kafka-python's default (idempotent) producer wrote."""
    import multiprocessing
    import os
    import signal
    from confluent_kafka import Consumer, KafkaError, Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    from kafka import KafkaConsumer, KafkaProducer

    topic = "grp"
    admin = AdminClient({"bootstrap.servers": BOOT})
    for t, f in admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)]).items():
        f.result(timeout=15)

    def produce(prefix, n):
        p = Producer({"bootstrap.servers": BOOT})
        for i in range(n):
            p.produce(topic, value=f"{prefix}-{i}".encode(), partition=i % 4)
        if p.flush(30) != 0:
            fail("the producer did not deliver everything")

    def consumer(group, **extra):
        conf = {"bootstrap.servers": BOOT, "group.id": group, "auto.offset.reset": "earliest",
                "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
        conf.update(extra)
        c = Consumer(conf)
        c.subscribe([topic])
        return c

    def read(c, want, seconds=30):
        got, deadline = [], time.time() + seconds
        while len(got) < want and time.time() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                fail(f"consumer error: {m.error()}")
            got.append(m.value().decode())
        return got

    # Commit, restart, resume.
    produce("a", 40)
    c = consumer("resume")
    first = read(c, 40)
    if sorted(first) != sorted(f"a-{i}" for i in range(40)):
        fail(f"a group consumer read {len(first)} of 40")
    c.commit(asynchronous=False)
    c.close()
    produce("b", 20)
    c = consumer("resume")
    again = read(c, 20)
    extra = read(c, 1, seconds=3)
    c.close()
    if sorted(again + extra) != sorted(f"b-{i}" for i in range(20)):
        fail(f"after a restart the group read {len(again + extra)} messages, want the 20 after its commit: {(again + extra)[:5]}")

    # Two members split the partitions; one leaves, the other takes all.
    a, b = consumer("split"), consumer("split")
    deadline = time.time() + 30
    while time.time() < deadline:
        a.poll(0.2)
        b.poll(0.2)
        pa, pb = {p.partition for p in a.assignment()}, {p.partition for p in b.assignment()}
        if len(pa) == 2 and len(pb) == 2 and not pa & pb:
            break
    else:
        fail(f"two members did not split four partitions: {pa} and {pb}")
    b.close()
    deadline = time.time() + 30
    while time.time() < deadline and len(a.assignment()) != 4:
        a.poll(0.2)
    if len(a.assignment()) != 4:
        fail(f"after the other left, the member holds {len(a.assignment())} partitions, want 4")
    a.close()

    # One dies: the other takes its partitions once its session times out.
    def doomed(ready):
        c = consumer("death")
        while not c.assignment():
            c.poll(0.2)
        ready.set()
        while True:
            c.poll(0.2)
    ready = multiprocessing.Event()
    child = multiprocessing.Process(target=doomed, args=(ready,))
    child.start()
    if not ready.wait(30):
        fail("the member that is to die never got partitions")
    survivor = consumer("death")
    deadline = time.time() + 30
    while time.time() < deadline and len(survivor.assignment()) != 2:
        survivor.poll(0.2)
    if len(survivor.assignment()) != 2:
        fail(f"the second member holds {len(survivor.assignment())} partitions beside the first, want 2")
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    killed = time.time()
    while time.time() < killed + 30 and len(survivor.assignment()) != 4:
        survivor.poll(0.2)
    if len(survivor.assignment()) != 4:
        fail("the survivor did not take the dead member's partitions")
    took = time.time() - killed
    survivor.close()

    # kafka-python, with its defaults.
    kp = KafkaProducer(bootstrap_servers=BOOT)
    for i in range(100):
        kp.send(topic, value=f"kp-{i}".encode())
    kp.flush(30)
    kp.close()
    k = KafkaConsumer(topic, bootstrap_servers=BOOT, group_id="kp-group", auto_offset_reset="earliest", consumer_timeout_ms=8000)
    got = {m.value.decode() for m in k}
    k.close()
    want = {f"kp-{i}" for i in range(100)}
    if not want <= got:
        fail(f"kafka-python's group consumer read {len(got & want)} of kafka-python's 100")
    print(f"groups: ok (the dead member's partitions moved {took:.1f} s after SIGKILL, session timeout 6 s)")


def idempotent():
    """Idempotent producers with each library's settings: confluent-kafka
    with enable.idempotence, kafka-python with its defaults (idempotent
    since 2.1); every message stored once, in order; a transactional
    producer is refused at once."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    from kafka import KafkaProducer

    topic = "id"
    admin = AdminClient({"bootstrap.servers": BOOT})
    for t, f in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).items():
        f.result(timeout=15)
    p = Producer({"bootstrap.servers": BOOT, "enable.idempotence": True, "linger.ms": 2})
    errors = []
    for i in range(2000):
        p.produce(topic, value=f"ck-{i}".encode(), partition=0, on_delivery=lambda e, m: e is not None and errors.append(e))
    if p.flush(30) != 0 or errors:
        fail(f"the idempotent confluent-kafka producer did not deliver everything: {errors[:3]}")
    if not KafkaProducer.DEFAULT_CONFIG["enable_idempotence"]:
        fail("kafka-python's producer is not idempotent by default here")
    kp = KafkaProducer(bootstrap_servers=BOOT)
    futures = [kp.send(topic, value=f"kp-{i}".encode(), partition=0) for i in range(500)]
    kp.flush(30)
    for f in futures:
        f.get(timeout=30)
    kp.close()

    c = Consumer({"bootstrap.servers": BOOT, "group.id": "id-reader", "enable.partition.eof": True, "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, -2)])
    got, deadline = [], time.time() + 30
    while time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                break
            fail(f"consumer error: {m.error()}")
        got.append(m.value())
    c.close()
    want = [f"ck-{i}".encode() for i in range(2000)] + [f"kp-{i}".encode() for i in range(500)]
    if got != want:
        fail(f"read {len(got)} messages, want {len(want)}; first difference at {next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)}")

    t = Producer({"bootstrap.servers": BOOT, "transactional.id": "tx-1"})
    try:
        t.init_transactions(10)
        fail("a transactional producer was not refused")
    except KafkaException as e:
        if e.args[0].retriable():
            fail(f"a transactional producer got a retriable error: {e}")
    print("idempotent: ok")


def commits():
    """Committed offsets of a group outside membership (assigned
    partitions): confluent-kafka commits with metadata, reads them back
    and a new consumer of the group resumes there; kafka-python reads
    them and commits its own, which confluent-kafka reads."""
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    from kafka import KafkaConsumer, OffsetAndMetadata
    from kafka import TopicPartition as KTP

    topic, group = "cm", "cm-group"
    admin = AdminClient({"bootstrap.servers": BOOT})
    for t, f in admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)]).items():
        f.result(timeout=15)
    p = Producer({"bootstrap.servers": BOOT})
    for part in (0, 1):
        for i in range(100):
            p.produce(topic, value=f"p{part}-{i}".encode(), partition=part)
    if p.flush(30) != 0:
        fail("the producer did not deliver everything")

    def consumer():
        return Consumer({"bootstrap.servers": BOOT, "group.id": group, "enable.auto.commit": False,
                         "enable.partition.eof": True})

    c = consumer()
    c.commit(offsets=[TopicPartition(topic, 0, 30, metadata="checkpoint-a"), TopicPartition(topic, 1, 70)], asynchronous=False)
    got = {tp.partition: (tp.offset, tp.metadata) for tp in c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=15)}
    c.close()
    if got[0] != (30, "checkpoint-a") or got[1][0] != 70:
        fail(f"committed {got}, want 30 with its metadata and 70")

    # A new consumer of the group starts where the group committed.
    c = consumer()
    c.assign([TopicPartition(topic, 0, -1000), TopicPartition(topic, 1, -1000)])  # OFFSET_STORED
    first, deadline = {}, time.time() + 30
    while len(first) < 2 and time.time() < deadline:
        m = c.poll(1.0)
        if m is None or (m.error() and m.error().code() == KafkaError._PARTITION_EOF):
            continue
        if m.error():
            fail(f"consumer error: {m.error()}")
        first.setdefault(m.partition(), (m.offset(), m.value()))
    c.close()
    if first != {0: (30, b"p0-30"), 1: (70, b"p1-70")}:
        fail(f"resumed at {first}, want offsets 30 and 70")

    k = KafkaConsumer(bootstrap_servers=BOOT, group_id=group, enable_auto_commit=False)
    tp = KTP(topic, 0)
    k.assign([tp])
    if k.committed(tp) != 30:
        fail(f"kafka-python reads the committed offset as {k.committed(tp)}, want 30")
    k.commit({tp: OffsetAndMetadata(55, "from-kafka-python", -1)})
    k.close()
    c = consumer()
    (tp0,) = c.committed([TopicPartition(topic, 0)], timeout=15)
    c.close()
    if (tp0.offset, tp0.metadata) != (55, "from-kafka-python"):
        fail(f"after kafka-python's commit: {tp0.offset} {tp0.metadata!r}")
    print("commits: ok")


def sasl():
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
    ca, user, password, topic, denied = sys.argv[3:8]

    def conf(mechanism, pw, **more):
        c = {"bootstrap.servers": BOOT, "security.protocol": "SASL_SSL", "ssl.ca.location": ca,
             "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": pw}
        c.update(more)
        return c

    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        acked, errors = [], []
        p = Producer(conf(mechanism, password, **{"enable.idempotence": True, "acks": "all"}))
        for i in range(100):
            p.produce(topic, value=f"{mechanism}-{i}".encode(),
                      on_delivery=lambda e, m: errors.append(e) if e else acked.append(m.offset()))
        p.flush(30)
        if errors or len(acked) != 100:
            fail(f"{mechanism}: {len(acked)} acknowledged, errors {errors[:3]}")
        c = Consumer(conf(mechanism, password, **{"group.id": f"g-{mechanism}", "enable.auto.commit": False}))
        c.assign([TopicPartition(topic, 0, 0)])
        got, deadline = [], time.time() + 30
        while sum(g.startswith(mechanism) for g in got) < 100 and time.time() < deadline:
            m = c.poll(1)
            if m is not None and m.error() is None:
                got.append(m.value().decode())
        c.close()
        if [g for g in got if g.startswith(mechanism)] != [f"{mechanism}-{i}" for i in range(100)]:
            fail(f"{mechanism}: consumed {got[:5]}... ({len(got)})")

    # A wrong password: an authentication error, and nothing delivered.
    seen = []
    p = Producer(conf("SCRAM-SHA-512", password + "-wrong", **{"error_cb": lambda e: seen.append(e)}))
    delivered = []
    p.produce(topic, value=b"must-not-land", on_delivery=lambda e, m: delivered.append(e))
    p.flush(5)
    if not any(e.code() == KafkaError._AUTHENTICATION for e in seen):
        fail(f"a wrong password gave {seen!r}, not an authentication error")
    if any(e is None for e in delivered):
        fail("a message was delivered with a wrong password")
    c = Consumer(conf("SCRAM-SHA-512", password + "-wrong", **{"group.id": "g-wrong", "error_cb": lambda e: seen.append(e)}))
    c.assign([TopicPartition(topic, 0, 0)])
    for _ in range(5):
        m = c.poll(1)
        if m is not None and m.error() is None:
            fail("a record was fetched with a wrong password")
    c.close()

    # No ACL for DENIED: produce and fetch are refused with
    # TOPIC_AUTHORIZATION_FAILED.
    errs = []
    p = Producer(conf("SCRAM-SHA-256", password, **{"acks": "all"}))
    p.produce(denied, value=b"no", on_delivery=lambda e, m: errs.append(e))
    p.flush(15)
    if not errs or errs[0] is None or errs[0].code() != KafkaError.TOPIC_AUTHORIZATION_FAILED:
        fail(f"producing to {denied} without an ACL gave {errs!r}")
    cb = []
    c = Consumer(conf("SCRAM-SHA-256", password, **{"group.id": "g-denied", "error_cb": lambda e: cb.append(e.code())}))
    # A subscription: librdkafka reports a topic's permanent error to a
    # subscriber (an assignment of it just waits).
    c.subscribe([denied])
    refused, deadline = None, time.time() + 15
    while refused is None and time.time() < deadline:
        m = c.poll(1)
        if m is not None and m.error() is not None:
            refused = m.error().code()
        elif m is not None:
            fail(f"a record of {denied} was fetched without an ACL")
        elif KafkaError.TOPIC_AUTHORIZATION_FAILED in cb:
            refused = KafkaError.TOPIC_AUTHORIZATION_FAILED
    c.close()
    if refused != KafkaError.TOPIC_AUTHORIZATION_FAILED:
        fail(f"fetching {denied} without an ACL gave {refused!r}")
    print("sasl: ok")


{"confluent": confluent, "kafka-python": kafka_python, "failover": failover, "groups": groups,
 "idempotent": idempotent, "commits": commits, "sasl": sasl}[SCENARIO]()
