"""The reference central platform: what a site's platform sends to its lanes, on the contract.

The platform simulator (today ``sim_devices/central.py``) moves here onto the consumer library
(``portlane.edge.client``, issue 23 phase 2); this package starts with its pure parts.

Modules::

    declarations.py  the declarations (一次申报): from the traffic the platform expects to the
                     signed pre-decisions and control orders it sends, and when — pure
"""
