"""Running the daemons: systemd, the control socket, metrics, the recognition daemon.

Modules::

    daemons.py      entry points systemd runs (``portlane daemon lane|scanner``)
    runtime.py      systemd notify and watchdog, signals, logging
    control.py      the local control socket (Unix, peer credentials) and its client
    handlers.py     what each daemon answers there: ``LaneControl``, ``ScannerControl``
    metrics.py      Prometheus metrics of one daemon, on loopback
    recognition.py  the site's recognition daemon and ``SocketRecogniser``, its client
"""
