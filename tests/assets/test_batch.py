"""The streaming asset materializes one job partition end to end against the simulator:
results.jsonl has one line per input line, the metadata carries the job's figures, the
checks pass or warn as they should, the summary asset reads the results with polars,
and materializing the partition again resumes (sends nothing) instead of restarting."""

import json
import os

import dagster as dg
from promptforge_dagster.assets.batch import batch_results, batch_summary, jobs_partitions
from promptforge_dagster.clients.sqlite_registry import SQLiteRegistry
from promptforge_dagster.core.job_registry import JobRecord
from promptforge_dagster.resources import (
    CheckpointResource, JobRegistryResource, LLMResource, RateLimiterResource, StorageResource,
)


def make_job(tmp_path, lines):
    root = tmp_path / "bucket"
    (root / "inputs").mkdir(parents=True)
    src = root / "inputs" / "job.jsonl"
    src.write_text("".join(json.dumps(l) + "\n" if isinstance(l, dict) else l + "\n" for l in lines))
    key = f"job.jsonl#{os.stat(src).st_mtime_ns}@local-bucket/inputs/"
    registry_path = tmp_path / "registry.sqlite3"
    SQLiteRegistry(str(registry_path)).create(JobRecord(key, str(src), str(root / "outputs" / "job")))
    resources = {
        "storage": StorageResource(root=str(root)),
        "job_registry": JobRegistryResource(uri=f"sqlite://{registry_path}"),
        "checkpoints": CheckpointResource(interval_s=1.0, lease_ttl_s=30.0, heartbeat_s=1.0),
        "rate_limiter": RateLimiterResource(rpm_hint=30000),
    }
    return key, root, resources


def materialize(key, resources, llm, instance, config=None):
    return dg.materialize([batch_results, batch_summary], partition_key=key, instance=instance,
                          resources={**resources, "llm": llm}, raise_on_error=False,
                          run_config={"ops": {"batch_results": {"config": config or {}}}})


def test_materialization_metadata_checks_and_resume(tmp_path, simulator):
    lines = [{"id": f"r{i}", "prompt": f"question {i}"} for i in range(60)] + ['{"id": "broken", ']
    key, root, resources = make_job(tmp_path, lines)
    llm = LLMResource(model="openai/sim-model", api_base=simulator.api_base, api_key="sk-test")
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(jobs_partitions.name, [key])
        result = materialize(key, resources, llm, instance)
        assert result.success
        mat = result.asset_materializations_for_node("batch_results")[0]
        md = {k: v.value for k, v in mat.metadata.items()}
        assert md["prompts_total"] == 61 and md["succeeded"] == 60 and md["failed"] == 1
        assert md["skipped_as_done"] == 0 and md["tokens_in"] > 0 and md["achieved_rpm"] > 0
        assert md["input_uri"].endswith("inputs/job.jsonl") and md["output_uri"].endswith("results.jsonl")
        assert md["rate_limited_429"] == 0
        assert all(v is not None for v in md.values()), md  # no literal null in the UI
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        assert len(checks) == 3
        assert all(c.passed for c in checks.values()), checks
        summary = {k: v.value for k, v in result.asset_materializations_for_node("batch_summary")[0].metadata.items()}
        assert summary["lines"] == 61 and summary["errors_by_type"] == {"invalid_json": 1}
        out_lines = (root / "outputs" / "job" / "results.jsonl").read_text().splitlines()
        assert len(out_lines) == 61
        plot = root / "outputs" / "job" / "rate.png"
        assert md["rate_plot"] == str(plot) and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # the plot as text the UI shows inline: a code block under Dagster's 1,000-character inline limit
        chart = md["rate_chart"]
        assert chart.startswith("```text\nachieved RPM ") and "429s" in chart and len(chart) < 1000

        sent_before = simulator.stats()["received"]
        again = materialize(key, resources, llm, instance)
        assert again.success
        md2 = {k: v.value for k, v in again.asset_materializations_for_node("batch_results")[0].metadata.items()}
        assert md2["prompts_total"] == 61 and md2["skipped_as_done"] == 61
        assert simulator.stats()["received"] == sent_before  # resumed: nothing sent again


def test_failure_rate_check_warns_above_the_threshold(tmp_path, simulator):
    lines = [{"id": f"r{i}", "prompt": "__pf_400__" if i % 2 else "fine"} for i in range(20)]
    key, root, resources = make_job(tmp_path, lines)
    llm = LLMResource(model="openai/sim-model", api_base=simulator.api_base, api_key="sk-test")
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(jobs_partitions.name, [key])
        result = materialize(key, resources, llm, instance, config={"max_failure_rate": 0.2})
        assert result.success
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        rate = checks["failure_rate_under_threshold"]
        assert not rate.passed and rate.severity == dg.AssetCheckSeverity.WARN
        assert checks["one_result_line_per_input_line"].passed and checks["custom_ids_unique"].passed


def test_an_unknown_partition_fails_with_a_clear_message(tmp_path, simulator):
    _, _, resources = make_job(tmp_path, [{"id": "a", "prompt": "p"}])
    llm = LLMResource(model="openai/sim-model", api_base=simulator.api_base, api_key="sk-test")
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(jobs_partitions.name, ["nobody/x.jsonl#1"])
        result = materialize("nobody/x.jsonl#1", resources, llm, instance)
        assert not result.success
        failure = result.get_step_failure_events()[0]
        assert "not in the job registry" in str(failure.step_failure_data.error.message)


def test_the_llm_resources_max_in_flight_caps_what_the_asset_sends_at_once(tmp_path, simulator_factory):
    # --max-in-flight is an optional cap, in the Dagster resource too: the server never holds more than it
    sim = simulator_factory("--rpm", "0", "--latency-ms", "200")
    lines = [{"id": f"r{i}", "prompt": f"question {i}"} for i in range(40)]
    peaks = []
    for cap in (3, None):  # the capped job first: the server's peak is of its whole life
        key, _, resources = make_job(tmp_path / f"cap-{cap}", lines)
        llm = LLMResource(model="openai/sim-model", api_base=sim.api_base, api_key="sk-test", max_in_flight=cap)
        with dg.DagsterInstance.ephemeral() as instance:
            instance.add_dynamic_partitions(jobs_partitions.name, [key])
            assert materialize(key, resources, llm, instance).success
        peaks.append(sim.stats()["peak_in_flight"])
    assert peaks[0] == 3 and peaks[1] > 3, peaks  # capped at 3; uncapped, the lane sends more at once
