"""The unit skeleton: what a lane, a scanner and any later unit kind are made of.

skeleton.py  Unit: identity, signer, outbox + sender + MQTT link, audit + anchor, nonce store +
             verifier + the command path, peer intake, bounded inbox + dispatcher, signed
             status and last will, tick, ordered shutdown
intake.py    PeerIntake: another unit's events verified, applied once and in order per passage
actions.py   Publish: the action every unit's logic shares
"""
