"""``portlane demo``: a whole simulated port on one machine — the composition root for
simulations (with ``edge/cli``, the only part of ``edge`` that may import ``sim_devices``).

Modules::

    options.py   the demo's options, checked in one place, and its errors
    run.py       starts the broker, simulators, daemons, traffic and platform; drives the run
    report.py    the run's state and what it reports: invariants, per-stage figures, stuck lanes
    predecisions.py  the platform's declarations made from the traffic plan, and what the run
                 reports of them: automatic releases, refusals, clearance time by release basis
    automation.py  per passage, what the lane settled on its own (by its reads, or on a fully
                 matching pre-decision), right or wrong, and what went to an officer
    cargo_report.py  the cargo lanes' figures (occupancies, alarms, adjudications, seals) and invariants
    sitegen.py   a demo site with any number of lanes, generated from a real site file; the
                 simulators' links put into a site
    simsite.py   ``portlane sim site``: a site's devices, a broker, traffic and the platform
                 simulated, and a site file for the daemons (docs/operations.md §8)
    broker.py    the embedded broker and Mosquitto, for demos and tests
    observer.py  an independent subscriber that counts what really reached the broker
    secure.py    ``--secure``: the same port on the shipped TLS and ACL broker configuration
    console.py   the site console as ``--console`` runs it (demo users, scaled thresholds)
"""
