"""A dict-backed Storage for property tests (thousands of examples, no disk)."""

from __future__ import annotations

from promptforge_dagster.core.storage import ObjectInfo, PreconditionFailed


class MemoryStorage:
    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, int]] = {}
        self._gen = 0

    def stat(self, path):
        o = self.objects.get(path)
        return ObjectInfo(len(o[0]), o[1]) if o else None

    def read_range(self, path, start, length, generation=None):
        data, gen = self.objects[path]
        if generation is not None and gen != generation:
            raise PreconditionFailed(path)
        return data[start:start + length]

    def read_bytes(self, path):
        return self.objects[path][0]

    def write_bytes(self, path, data, *, if_generation_match=None):
        current = self.objects.get(path, (b"", 0))[1]
        if if_generation_match is not None and current != if_generation_match:
            raise PreconditionFailed(f"{path}: generation {current}, not {if_generation_match}")
        self._gen += 1
        self.objects[path] = (bytes(data), self._gen)
        return self._gen

    def write_stream(self, path, fill, *, if_generation_match=None):
        chunks = []
        fill(chunks.append)
        return self.write_bytes(path, b"".join(chunks), if_generation_match=if_generation_match)

    def list(self, prefix):
        return sorted(p for p in self.objects if p.startswith(prefix))

    def list_objects(self, prefix):
        return [(p, self.stat(p)) for p in self.list(prefix)]

    def mark_finished(self, paths, when):
        self.finished = {**getattr(self, "finished", {}), **{p: when for p in paths}}

    def delete(self, path):
        self.objects.pop(path, None)
