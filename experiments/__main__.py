"""``python -m experiments demo | study ...``."""

from .cli import main

raise SystemExit(main())
