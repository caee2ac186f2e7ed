"""The BLE relay: postcards for the owner shown on the pupu device (frames.py is the wire format)."""
