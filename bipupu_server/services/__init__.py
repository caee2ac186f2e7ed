"""Service accounts: commands sent as cards, the daily fortune, broadcasts and their scheduler."""
