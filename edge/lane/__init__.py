"""One lane: the pure passage logic, the typed actions it hands out, the executor that alone
moves the devices, and the daemon that wires them.

Modules::

    passage.py         the lane's vocabulary: stages, sensor samples, identities, the passage record
    logic.py           ``LaneLogic``: the passage state machine and the safety logic — pure
    actions.py         the typed seam: ``OpenGate``, ``CloseGate``, ``Publish`` … out of the logic
    gate.py            what the barrier was told and whether it confirmed — pure
    executor.py        the one place actions touch devices (the second safety guard)
    devices.py         the lane's devices from the site file, supervised, sampled into ``Sensors``
    identification.py  identifying a vehicle: RFID e-card, weighbridge, camera reads
    recognition.py     the lane's side of recognition: frames in, contract reads out
    commands.py        signed commands from the platform: verify, act through the logic, answer
    daemon.py          ``LaneDaemon``: the wiring
"""
