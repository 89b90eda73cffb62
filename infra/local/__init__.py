"""The embedded local stack: the synthesized CDK template run on moto, in one process.

Python API::

    from infra.local import LocalStack

    with LocalStack.start(repo_root, stage="dev") as stack:
        stack.post_webhook("crm", {"type": ..., "timestamp": ..., "data": {...}})
        stack.drain()
        print(stack.report())
"""

from infra.local.stack import DrainTimeout, LocalStack, find_repo_root

__all__ = ["DrainTimeout", "LocalStack", "find_repo_root"]
