"""The shared X-ray scanner: one queue for several lanes, one vehicle at a time, fired only
with the exclusion zone clear.

Modules::

    queue.py     the scan queue: priority, then the lane served longest ago, then FIFO — pure
    logic.py     ``ScannerLogic``: lease, fault policy, re-queue, restart recovery — pure
    executor.py  the one place the scanner's actions touch the PLC (re-reads it before it fires)
    daemon.py    ``ScannerDaemon``: a unit (``edge.unit``) and the scanner
"""
