"""`python -m mockserver`: the returns-mock command, wherever the interpreter is and its scripts folder is
not on PATH (a venv not activated, a Windows user)."""

import sys

from mockserver.cli import main

sys.exit(main())
