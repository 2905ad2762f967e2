"""``python -m escnn_tensor.compare``: see :mod:`escnn_tensor.compare.cli`."""
import sys

from .cli import main

sys.exit(main())
