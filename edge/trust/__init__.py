"""Trust: the broker is not a trust boundary, so whatever changes a passage or fires equipment
is signed by its sender and verified by its receiver (``docs/security.md``).

Modules::

    commands.py      signed commands: signer, verifier (signature, validity, authority, nonce)
    command_path.py  one path for every unit's commands: verify, act, audit, answer, refusals
    events.py        signed events: ``EventSigner``, ``verify_event``, ``PeerEvents``
    authority.py     who may sign what: every trusted key, its unit and its authority
    keys.py          unit keys and credential files: where a daemon finds them
    nonces.py        nonce stores: a command is accepted once
    rejections.py    rejections audited in aggregate (a flood costs counters, not fsyncs)
    audit.py         the hash-chained audit log: the writer (``AuditLog``), operator rules
    audit_chain.py   the chain: entry format, ``verify_log``, signed ``Checkpoint``
    anchor.py        publishes signed checkpoints of the audit log
    config_audit.py  what a configuration change changes (audit entry, key-change guard)
    pki.py           the site's CA, client certificates, signing keys and broker ACL
"""
