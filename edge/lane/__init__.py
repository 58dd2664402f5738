"""One lane: the pure passage logic, the typed actions it hands out, the executor that alone
moves the devices, and the daemon that wires them.

Modules::

    passage.py         the lane's vocabulary: stages, sensor samples, identities, the passage record
    logic.py           ``LaneLogic``: the passage state machine and the safety logic — pure
    way_out.py         (mixed into the logic) the vehicle's way out, judged on latched evidence
    technician.py      (mixed into the logic) overrides, closures by cause
    autorelease.py     (mixed into the logic) releases on signed pre-decisions, revokes
    predecision_rules.py  what a declared vehicle is, what the lane read, the matching rules — pure
    predecisions.py    the book of pre-decisions and control orders — pure
    predecision_store.py  the book on disk
    cargo.py           (mixed into the logic) the radiation portal's occupancies and alarms in the
                       passages; the choke point every automatic release asks (``_cargo_hold``)
    seals.py           (mixed into the logic, through cargo.py) seals read, customs' e-lock commands
    cargo_checks.py    radiation portal and seal rules (named blockers, adjudication) — pure
    n42_store.py       each occupancy's N42.42 document on disk, bounded
    actions.py         the typed seam: ``OpenGate``, ``CloseGate``, ``Publish`` … out of the logic
    gate.py            what the barrier was told and whether it confirmed — pure
    executor.py        the one place actions touch devices (the second safety guard)
    devices.py         the lane's devices from the site file, supervised, sampled into ``Sensors``
    identification.py  identifying a vehicle: RFID e-card, weighbridge, camera reads
    recognition.py     the lane's side of recognition: frames in, contract reads out
    commands.py        what each signed command does (they arrive through the unit's command path)
    daemon.py          ``LaneDaemon``: a unit (``edge.unit``) and the lane
"""
