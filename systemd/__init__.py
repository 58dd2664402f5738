"""The systemd unit files, udev rules and sysusers file of portlane, as package data.

Not code: this folder ships inside the wheel (``portlane.systemd``) so that a lane controller
installed from the wheel has them; ``portlane systemd install`` copies them into place
(docs/operations.md §2).
"""
