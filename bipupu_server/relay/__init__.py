"""The BLE relay: postcards for the owner shown on the pupu device (frames.py is the wire format).

Importing the package costs nothing: bleak is loaded by relay.py and bluetooth.py, only when the
relay is configured or a `ble-*` command runs.
"""

# The relay's states, for /metrics (one gauge per state), /health and the admin pages:
# off: not configured; unavailable: no Bluetooth here (no adapter, no BlueZ); searching: the device is
# not in reach (or the link was lost); connecting: found, connecting; connected: showing cards.
STATES = ("off", "unavailable", "searching", "connecting", "connected")
