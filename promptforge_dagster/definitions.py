"""The Dagster code location. Built once; the sensor, the streaming asset and the
resources are wired here (see issue 5). Until then it holds no assets, and loads."""

import dagster as dg


def build_definitions() -> dg.Definitions:
    return dg.Definitions()


defs = build_definitions()
