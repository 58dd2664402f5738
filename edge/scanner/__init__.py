"""The shared X-ray scanner: one queue for several lanes, one vehicle at a time, fired only
with the exclusion zone clear.

Modules::

    queue.py   the scan queue: priority, then the lane served longest ago, then FIFO — pure
    daemon.py  ``ScannerDaemon``: lease, interlock, fault policy, journal, scan events
"""
