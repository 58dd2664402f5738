"""Delivery: every event durable on disk before it is sent, sent in order, and received
through one bounded inbox.

Modules::

    outbox.py          the durable outbox (``Outbox``), composed of the five below
    outbox_store.py      the SQLite file: schema, opening checks, epoch and seq, row transactions
    outbox_policy.py     overflow (what of a batch fits) and retention (eviction)
    outbox_batch.py      group commit: the hand-over between the loop and the writer thread
    outbox_queries.py    reads: the in-memory tail, pending and newest rows, counters
    outbox_replay.py     re-queueing retained events, purging undelivered ones
    sender.py          drains the outbox into the MQTT link, deletes only what was acknowledged
    events.py          ``EventWriter``: a unit's contract models into its outbox, one topic per type
    flush.py           ``FlushGroup``: one fsync per store (outbox, audit log, journal) per dispatcher step
    replay.py          the outbox side of the ``replay_events`` command
    mqtt.py            ``MqttLink``: the one paho bridge (MQTT 5 with 3.1.1 fallback, TLS, backoff)
    inbox.py           bounded drop-oldest inbox for what a daemon receives
    state.py           unusable state files (corrupt, read-only, full disk): one line and an exit code
"""
