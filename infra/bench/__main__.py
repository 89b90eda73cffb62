"""``python -m infra.bench [--quick] [--only SECTION]`` (``make bench``)."""

from infra.bench.harness import main

raise SystemExit(main())
