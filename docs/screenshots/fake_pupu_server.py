"""The server as run.py serves it, but with its BLE relay connected to the fake pupu device of the tests.

    BIPUPU_BLE_DEVICE=pupu-1 BIPUPU_BLE_OWNER=00000002 python docs/screenshots/fake_pupu_server.py

For take.py, so that the screenshots show a relay at work on a machine without Bluetooth; the fake
(tests/fake_pupu.py) answers like firmware, through bleak's real client. Not for production.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from bipupu_server.app import init_app  # noqa: E402
from bipupu_server.config import from_environment  # noqa: E402
from bipupu_server.relay.bluetooth import Bluetooth  # noqa: E402
from tests.fake_pupu import FakePupu  # noqa: E402


def main() -> None:
    config = from_environment(os.environ)
    pupu = FakePupu(name=config.ble_device or "pupu-1", write_size=180)

    async def find(_target: str):
        return pupu.ble_device

    app = init_app(config, bluetooth=Bluetooth(find=find, backend=pupu.backend))
    web.run_app(app, host=config.host, port=config.port, print=None)


if __name__ == "__main__":
    main()
