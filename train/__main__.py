import sys

from .stop import listen_for_signals

if sys.argv[1:2] != ["build-dataset"]:
    listen_for_signals()  # first of all: a Stop that arrives during the imports and the loading is honoured

from .cli import main  # noqa: E402

sys.exit(main())
