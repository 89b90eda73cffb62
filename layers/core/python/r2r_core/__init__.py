"""r2r core: canonical model, mappings, billing rules, ERP and SaaS clients.

Shipped to Lambda as a layer (``/opt/python/r2r_core``) and installed in the
development venv from ``layers/core/python``. Nothing here talks to AWS at import time.
"""

__version__ = "0.1.0"
