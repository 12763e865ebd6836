"""``python -m gateway.install``: the installer from a checkout (``systemd/install.sh``)."""

import sys

from gateway.install.cli import main

sys.exit(main())
