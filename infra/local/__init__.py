"""The embedded local stack: the synthesized CDK template run on moto, on 127.0.0.1.

Python API::

    from infra.local import LocalStack

    with LocalStack.start(repo_root, stage="dev") as stack:
        stack.post_webhook("crm", {"type": ..., "timestamp": ..., "data": {...}})
        stack.drain()
        print(stack.report())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infra.local.stack import DrainTimeout, LocalStack, find_repo_root

__all__ = ["DrainTimeout", "LocalStack", "find_repo_root"]


def __getattr__(name: str) -> Any:
    # Lazy, so that ``python -m infra.local.moto_process`` does not import the whole stack.
    if name in __all__:
        from infra.local import stack

        return getattr(stack, name)
    raise AttributeError(name)
