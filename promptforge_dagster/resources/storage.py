"""The storage resource: the input/output bucket (a local folder or GCS)."""

from __future__ import annotations

import os
from typing import Optional

import dagster as dg

from promptforge_dagster.core.storage import Storage, is_gcs, join


class StorageResource(dg.ConfigurableResource):
    """Where inputs arrive and outputs go. ``root`` is ``gs://bucket`` or a local folder
    standing in for one (the embedded default)."""

    root: str
    input_root: Optional[str] = None  # inputs in another bucket (production: input and output buckets)
    input_prefix: str = "inputs/"
    output_prefix: str = "outputs/"

    @property
    def outputs_share_input_bucket(self) -> bool:
        return self.inputs_root.rstrip("/") == self.root.rstrip("/")

    @property
    def is_gcs(self) -> bool:
        """Inputs on GCS: object generations are creation times (the sensor's high-water mark)."""
        return is_gcs(self.inputs_root)

    def is_output(self, name: str) -> bool:
        """Whether an object name in the input bucket lies under the output prefix."""
        return self.outputs_share_input_bucket and name.startswith(self.output_prefix.lstrip("/"))

    def storage(self) -> Storage:
        from promptforge_dagster.clients.storage_for import storage_for

        if not is_gcs(self.root):
            os.makedirs(join(self.root, self.input_prefix), exist_ok=True)
        return storage_for(self.root)

    @property
    def inputs_root(self) -> str:
        return self.input_root or self.root

    @property
    def input_uri(self) -> str:
        return join(self.inputs_root, self.input_prefix) + "/"

    def output_uri(self, name: str) -> str:
        return join(self.root, self.output_prefix, name)

    def object_uri(self, name: str) -> str:
        """An input object's location from its name in the input bucket."""
        return join(self.inputs_root, name)

    def object_name(self, uri: str) -> str:
        return uri[len(self.inputs_root.rstrip("/")) + 1:]
