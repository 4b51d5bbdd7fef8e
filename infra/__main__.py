"""Entry point for `pulumi up` (run from this folder)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi  # noqa: E402

from infra import config  # noqa: E402
from infra.program import build  # noqa: E402

stack = build(config.load())
pulumi.export("input_bucket", stack.storage.input_bucket.name)
pulumi.export("output_bucket", stack.storage.output_bucket.name)
pulumi.export("receiver_url", stack.events.receiver.uri)
pulumi.export("cluster", stack.compute.cluster.name)
pulumi.export("repository", stack.compute.repository.name)
