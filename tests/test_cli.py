"""End to end through the real `promptforge` command and the provider simulator:
results.jsonl holds exactly one line per input line, exit codes say whether the job
completed, failures are one line, progress is printed, and gs:// works both ways."""

import json
import os
import subprocess
import sys

import pytest

from promptforge_dagster.cli import main
from tests.conftest import ROOT

PROMPTFORGE = [sys.executable, "-m", "promptforge_dagster.cli"]


def cli(*args, env=None, timeout=300):
    full_env = {**os.environ, "OPENAI_API_KEY": "sk-test", **(env or {})}
    return subprocess.run([*PROMPTFORGE, *args], capture_output=True, text=True, env=full_env, timeout=timeout,
                          cwd=ROOT)


def batch_file(path, n, bad=()):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q {i}"}]}}) + "\n")
        for line in bad:
            f.write(line + "\n")


def test_run_writes_exactly_one_line_per_input_line(tmp_path, simulator_factory):
    sim = simulator_factory("--rpm", "3000", "--latency-ms", "5", "--error-rate", "0.05", "--seed", "1")
    batch_file(tmp_path / "in.jsonl", 300, bad=['{"custom_id": "oops"', '{"custom_id": "r7", "url": "/v1/chat/completions"}'])
    p = cli("run", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out"), "--model", "openai/sim-model",
            "--api-base", sim.api_base, "--rpm-hint", "2000", "--rate-window", "2")
    assert p.returncode == 0, p.stderr
    out = [json.loads(l) for l in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(out) == 302
    ids = [r["custom_id"] for r in out]
    assert len(set(ids)) == 302 and {f"r{i}" for i in range(300)} <= set(ids)
    assert sum(r["error"] is None for r in out) == 300  # 5% injected 503s were retried
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["succeeded"] == 300 and summary["errors_by_code"] == {"duplicate_id": 1, "invalid_json": 1}
    assert summary["retries"] > 0 and summary["achieved_rpm"] > 0
    assert "progress:" in p.stderr  # not a terminal: log lines
    assert "results: " in p.stdout


def test_not_jsonl_fails_with_one_line_and_exit_1(tmp_path, simulator):
    (tmp_path / "paper.pdf").write_bytes(b"%PDF-1.5\n%\xb5\xed\xae\xfb\n")
    p = cli("run", str(tmp_path / "paper.pdf"), "--output", str(tmp_path / "out"), "--model", "openai/m",
            "--api-base", simulator.api_base, "--quiet")
    assert p.returncode == 1
    assert p.stderr.strip().count("\n") == 0
    assert "paper.pdf is not JSONL: it looks like a PDF document" in p.stderr


def test_bad_key_stops_the_job_keeps_progress_and_never_prints_the_key(tmp_path, simulator_factory):
    sim = simulator_factory("--api-key", "sk-right")
    batch_file(tmp_path / "in.jsonl", 20)
    secret = "sk-wrong-but-secret-123456"
    p = cli("run", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out"), "--model", "openai/sim-model",
            "--api-base", sim.api_base, env={"OPENAI_API_KEY": secret})
    assert p.returncode == 1
    assert "job failed: stopped:" in p.stderr and "rerun with the same --output" in p.stderr
    assert secret not in p.stderr + p.stdout
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_gcs_input_and_output(tmp_path, simulator, gcs_env, gcs_bucket, fake_gcs):
    batch_file(tmp_path / "in.jsonl", 50)
    gcs_env.bucket(gcs_bucket).blob("jobs/in.jsonl").upload_from_filename(str(tmp_path / "in.jsonl"))
    p = cli("run", f"gs://{gcs_bucket}/jobs/in.jsonl", "--output", f"gs://{gcs_bucket}/out/job1",
            "--model", "openai/sim-model", "--api-base", simulator.api_base, "--rpm", "6000",
            env={"STORAGE_EMULATOR_HOST": fake_gcs})
    assert p.returncode == 0, p.stderr
    data = gcs_env.bucket(gcs_bucket).blob("out/job1/results.jsonl").download_as_bytes()
    assert sorted(json.loads(l)["custom_id"] for l in data.splitlines()) == sorted(f"r{i}" for i in range(50))
    summary = json.loads(gcs_env.bucket(gcs_bucket).blob("out/job1/summary.json").download_as_bytes())
    assert summary["input"] == f"gs://{gcs_bucket}/jobs/in.jsonl" and summary["input_generation"] > 0


def test_demo_runs_with_no_setup_and_learns_its_accounts_ceiling_with_one_burst_of_429s_at_most(tmp_path):
    # issue 13, point 8: the learned ceiling within 10% of the demo's 4,800 RPM account, at most
    # one burst of 429s in its plot (the default 2,000 prompts, as a user runs it)
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    p = subprocess.run([*PROMPTFORGE, "demo", "--dir", str(tmp_path / "demo")],
                       capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    out = (tmp_path / "demo" / "output" / "results.jsonl").read_text().splitlines()
    assert len(out) == 2002
    assert "results: " in p.stdout
    summary = json.loads((tmp_path / "demo" / "output" / "summary.json").read_text())
    (lane,) = summary["rate_lanes"].values()
    assert 0.9 * 4800 <= lane["learned_rpm_ceiling"] <= 1.1 * 4800, lane
    refusals = next(line for line in summary["rate_chart"].splitlines() if line.startswith("429s"))
    columns = refusals[len("429s"):].rsplit("total", 1)[0]
    bursts = [run for run in columns.split(" ") if run]  # runs of columns that hold 429s
    assert len(bursts) <= 1, summary["rate_chart"]
    assert lane["rate_limited"] <= 0.01 * lane["sent"], lane


def test_adaptive_pacing_learns_a_limit_it_was_never_told(tmp_path, simulator_factory):
    sim = simulator_factory("--rpm", "1200", "--headers", "none", "--latency-ms", "20")
    batch_file(tmp_path / "in.jsonl", 700)
    p = cli("run", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out"), "--model", "openai/sim-model",
            "--api-base", sim.api_base, "--rate-window", "2", "--quiet")
    assert p.returncode == 0, p.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    (lane,) = summary["rate_lanes"].values()
    assert lane["controller"] == "adaptive"
    assert 900 <= lane["learned_rpm_ceiling"] <= 1300
    stats = sim.stats()
    assert stats["ok"] == 700
    assert stats["rate_limited"] / stats["received"] < 0.10  # discovery included


def test_rerun_resumes_and_says_so_while_restart_starts_over(tmp_path, simulator_factory):
    """Running again with the same OUTPUT sends nothing and reports what was already done;
    --restart discards that progress and sends every prompt again."""
    sim = simulator_factory("--rpm", "0", "--latency-ms", "5")
    batch_file(tmp_path / "in.jsonl", 40)
    args = ["run", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out"), "--model", "openai/sim-model",
            "--api-base", sim.api_base, "--rpm-hint", "6000"]
    assert cli(*args).returncode == 0
    sent = sim.stats()["received"]
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert "resuming: 40 prompts already done" in again.stderr
    assert sim.stats()["received"] == sent
    assert "40 skipped as already done" in again.stdout
    restart = cli(*args, "--restart")
    assert restart.returncode == 0, restart.stderr
    assert "resuming:" not in restart.stderr
    assert sim.stats()["received"] == sent + 40
    assert len((tmp_path / "out" / "results.jsonl").read_text().splitlines()) == 40


def test_help_is_plain_grouped_and_documents_exit_codes_and_version(capsys):
    from promptforge_dagster.cli import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    assert "``" not in text and "exit codes:" in text and "130" in text and "examples:" in text
    assert "pacing" in text and "(default: 120.0)" in text and "OPENAI_API_KEY" in text
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("promptforge ")


def test_contradictory_flags_are_refused(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["run", str(tmp_path / "x.jsonl"), "--output", str(tmp_path), "--model", "openai/m",
              "--rpm", "100", "--rpm-hint", "50"])
    assert exc.value.code == 2 and "contradict" in capsys.readouterr().err


def test_dry_run_counts_checks_and_estimates_without_sending_or_writing(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a dry run needs no key
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "prompt": "' + "x" * 400 + '", "max_tokens": 50}\n'
                   '{"id": "b", "prompt": ' + "\n"
                   '{"id": "a", "prompt": "again"}\n'
                   '{"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", '
                   '"body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}\n')
    out = tmp_path / "out"
    assert main(["run", str(src), "--output", str(out), "--model", "openai/gpt-4o-mini", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "4 lines: 2 requests, 2 bad lines" in text
    assert "invalid_json: 1" in text and "duplicate_id: 1" in text and "line 2:" in text
    assert "$" in text and "RPM" in text
    assert not out.exists()  # nothing written


def test_status_reads_progress_from_the_output_without_sending(tmp_path, capsys, simulator, monkeypatch):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(f'{{"id": "r{i}", "prompt": "p"}}\n' for i in range(30)))
    out = tmp_path / "out"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("PROMPTFORGE_HOME", str(tmp_path / "home"))
    assert main(["run", str(src), "--output", str(out), "--model", "openai/sim-model", "--api-base",
                 simulator.api_base, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "checkpoint: published" in text and "30 of 30 prompts done (100.0%)" in text
    assert "registry: succeeded" in text and "30 succeeded" in text
    assert main(["status", str(tmp_path / "nothing")]) == 1
    assert "holds no job" in capsys.readouterr().err


def test_rerun_failed_and_export_after_a_run(tmp_path, capsys, simulator_factory, monkeypatch):
    import polars as pl

    log = tmp_path / "requests.log"
    simulator = simulator_factory("--rpm", "6000", "--latency-ms", "1", "--request-log", str(log))

    src = tmp_path / "in.jsonl"
    # two prompts the simulator answers 503 (retried until exhausted: retryable failures)
    lines = [f'{{"id": "r{i}", "prompt": "p{i}"}}' for i in range(20)]
    lines[3] = '{"id": "r3", "prompt": "__pf_500__"}'
    lines[11] = '{"id": "r11", "prompt": "__pf_500__"}'
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("PROMPTFORGE_HOME", str(tmp_path / "home"))
    assert main(["run", str(src), "--output", str(out), "--model", "openai/sim-model", "--api-base",
                 simulator.api_base, "--max-attempts", "1", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["errors_by_code"] == {"retries_exhausted": 2}
    capsys.readouterr()
    assert main(["export", str(out), "--to", "csv", "--dest", str(tmp_path / "r.csv"), "--input-order"]) == 0
    table = pl.read_csv(tmp_path / "r.csv")
    assert table["line"].to_list() == list(range(1, 21)) and table["custom_id"][3] == "r3"
    assert table["error_code"][3] == "retries_exhausted" and table["content"][0].startswith("echo: ")
    assert main(["export", str(out), "--dest", str(tmp_path / "r.parquet")]) == 0
    assert pl.read_parquet(tmp_path / "r.parquet").height == 20
    sent_before = len(log.read_text().splitlines())
    assert main(["rerun-failed", str(out), "--api-base", simulator.api_base, "--quiet"]) == 0
    sent = [json.loads(l) for l in log.read_text().splitlines()[sent_before:]]
    assert sorted({r.get("custom_id") for r in sent}) == ["r11", "r3"]  # only the failed prompts went again
    after = json.loads((out / "summary.json").read_text())
    assert after["prompts"] == 20 and after["errors_by_code"] == {"retries_exhausted": 2}  # still failing upstream
    lines_out = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(l["custom_id"] for l in lines_out) == sorted(f"r{i}" for i in range(20))


def test_deployments_file_spreads_one_model_over_several_and_drops_a_dead_one(tmp_path, simulator_factory):
    slow = simulator_factory("--rpm", "1200", "--headers", "none", "--latency-ms", "5",
                             "--request-log", str(tmp_path / "slow.log"))
    fast = simulator_factory("--rpm", "3600", "--headers", "none", "--latency-ms", "5",
                             "--request-log", str(tmp_path / "fast.log"))
    dead = simulator_factory("--api-key", "sk-the-right-one", "--latency-ms", "5")
    (tmp_path / "deployments.yaml").write_text(f"""
model_list:
  - model_name: gpt-4o-mini
    litellm_params: {{model: openai/sim-a, api_base: "{slow.api_base}", api_key: os.environ/KEY_SLOW}}
    model_info: {{id: slow}}
  - model_name: gpt-4o-mini
    litellm_params: {{model: openai/sim-b, api_base: "{fast.api_base}", api_key: os.environ/KEY_FAST}}
    model_info: {{id: fast}}
  - model_name: gpt-4o-mini
    litellm_params: {{model: openai/sim-c, api_base: "{dead.api_base}", api_key: os.environ/KEY_DEAD}}
    model_info: {{id: dead}}
""")
    batch_file(tmp_path / "in.jsonl", 1500)
    keys = {"KEY_SLOW": "sk-slow-1", "KEY_FAST": "sk-fast-2", "KEY_DEAD": "sk-wrong-3"}
    p = cli("run", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out"), "--model", "openai/gpt-4o-mini",
            "--deployments", str(tmp_path / "deployments.yaml"), "--rate-window", "5", env={"OPENAI_API_KEY": "", **keys})
    assert p.returncode == 0, p.stderr
    out = [json.loads(l) for l in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(out) == 1500 and all(r["error"] is None for r in out)
    slow_n = len((tmp_path / "slow.log").read_text().splitlines())
    fast_n = len((tmp_path / "fast.log").read_text().splitlines())
    assert slow_n > 100 and fast_n > 1.5 * slow_n, (slow_n, fast_n)  # both used, each at its own ceiling
    assert "deployment dead of gpt-4o-mini dropped (HTTP 401" in p.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(summary["deployments"]["gpt-4o-mini"]["dropped"]) == ["dead"]
    assert {lane.split("#")[0] for lane in summary["rate_lanes"]} == {
        "openai/sim-a@slow", "openai/sim-b@fast", "openai/sim-c@dead"}
    for key in keys.values():
        assert key not in p.stderr + p.stdout + (tmp_path / "out" / "summary.json").read_text()


def test_a_deployments_file_naming_an_unset_variable_is_one_line_and_exit_1(tmp_path):
    (tmp_path / "d.yaml").write_text("model_list:\n  - model_name: m\n    litellm_params: "
                                     "{model: openai/m, api_key: os.environ/PF_TEST_UNSET_KEY}\n")
    batch_file(tmp_path / "in.jsonl", 3)
    p = cli("run", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out"), "--model", "openai/m",
            "--deployments", str(tmp_path / "d.yaml"))
    assert p.returncode == 1 and p.stderr.strip().count("\n") == 0
    assert "d.yaml: model_list[0]: api_key names PF_TEST_UNSET_KEY, which is not set" in p.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("transport", ["auto", "litellm"])
def test_embeddings_and_responses_lines_run_with_their_own_output_and_carried_fields(tmp_path, simulator, transport):
    lines = [
        {"custom_id": "c1", "method": "POST", "url": "/v1/chat/completions", "metadata": {"row": 1},
         "body": {"model": "sim-model", "messages": [{"role": "user", "content": "hello"}]}},
        {"custom_id": "e1", "method": "POST", "url": "/v1/embeddings", "metadata": {"row": 2}, "source": "wiki",
         "body": {"model": "sim-embed", "input": ["first text", "second text"]}},
        {"custom_id": "r1", "method": "POST", "url": "/v1/responses", "metadata": {"row": 3},
         "body": {"model": "sim-model", "input": "say hi", "instructions": "be brief", "max_output_tokens": 64}},
        {"custom_id": "e2", "method": "POST", "url": "/v1/embeddings", "metadata": {"row": 4},
         "body": {"model": "sim-embed", "input": "x", "messages": []}},  # not an embeddings field: refused
        {"id": "s1", "prompt": "simple", "metadata": {"row": 5}},
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    p = cli("run", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out"), "--model", "openai/sim-model",
            "--api-base", simulator.api_base, "--transport", transport, "--quiet")
    assert p.returncode == 0, p.stderr
    out = {r["custom_id"]: r for r in map(json.loads, (tmp_path / "out" / "results.jsonl").read_text().splitlines())}
    assert [out[k]["metadata"]["row"] for k in ("c1", "e1", "r1", "e2", "s1")] == [1, 2, 3, 4, 5]
    assert out["e1"]["source"] == "wiki" and "source" not in out["c1"]
    emb = out["e1"]["response"]["body"]
    assert out["e1"]["error"] is None and [d["index"] for d in emb["data"]] == [0, 1]
    assert all(len(d["embedding"]) == 8 for d in emb["data"]) and emb["usage"]["prompt_tokens"] > 0
    resp = out["r1"]["response"]["body"]
    assert out["r1"]["error"] is None and resp["object"] == "response"
    assert resp["output"][0]["content"][0]["text"].startswith("echo: say hi")
    assert out["e2"]["error"]["code"] == "invalid_request"
    assert '"messages" is not an embeddings request field' in out["e2"]["error"]["message"]
    chat = out["c1"]["response"]["body"]["choices"][0]["message"]["content"]
    assert "row" not in chat and out["s1"]["error"] is None  # carried fields are never sent
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["succeeded"] == 4 and summary["tokens_in"] > 0
    if transport == "auto":  # the table has the answers of every endpoint and the carried fields
        import polars as pl

        e = cli("export", str(tmp_path / "out"), "--to", "parquet", "--input-order",
                "--dest", str(tmp_path / "t.parquet"))
        assert e.returncode == 0, e.stderr
        rows = {r["custom_id"]: r for r in pl.read_parquet(tmp_path / "t.parquet").to_dicts()}
        assert rows["r1"]["content"].startswith("echo: say hi") and len(json.loads(rows["e1"]["embedding"])) == 2
        assert json.loads(rows["e1"]["carried"]) == {"metadata": {"row": 2}, "source": "wiki"}


def test_anthropic_message_batches_lines_get_message_batches_results(tmp_path, simulator):
    lines = [
        {"custom_id": "a1", "params": {"model": "sim-model", "max_tokens": 64, "system": "be brief",
                                       "messages": [{"role": "user", "content": "hello claude"}]}},
        {"custom_id": "a2", "params": {"model": "sim-model", "messages": [{"role": "user", "content": "x"}]}},
        {"custom_id": "a3", "params": {"model": "sim-model", "max_tokens": 8, "top_k": 3,
                                       "messages": [{"role": "user", "content": "x"}]}},
        {"custom_id": "a4", "params": {"model": "sim-model", "max_tokens": 8, "api_base": "http://evil",
                                       "messages": [{"role": "user", "content": "x"}]}},
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    p = cli("run", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out"), "--model", "openai/sim-model",
            "--api-base", simulator.api_base, "--quiet")
    assert p.returncode == 0, p.stderr
    out = {r["custom_id"]: r for r in map(json.loads, (tmp_path / "out" / "results.jsonl").read_text().splitlines())}
    ok = out["a1"]["result"]
    assert ok["type"] == "succeeded" and ok["message"]["type"] == "message" and ok["message"]["role"] == "assistant"
    assert ok["message"]["content"][0]["text"].startswith("echo: be brief") and ok["message"]["stop_reason"] == "end_turn"
    assert ok["message"]["usage"]["input_tokens"] > 0 and "response" not in out["a1"]
    for cid, words in (("a2", "max_tokens\" is required"), ("a3", "params.top_k"), ("a4", "params.api_base")):
        err = out[cid]["result"]
        assert err["type"] == "errored" and err["error"]["error"]["type"] == "invalid_request_error"
        assert words in err["error"]["error"]["message"] and out[cid]["error"]["code"] == "invalid_request"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["succeeded"] == 1 and summary["errors_by_code"] == {"invalid_request": 3}


@pytest.mark.parametrize("transport", ["auto", "litellm"])
def test_azure_openai_deployments_are_reached_at_azures_address_with_its_header(tmp_path, simulator_factory, transport):
    sim = simulator_factory("--api-key", "azure-key-123", "--latency-ms", "5",
                            "--request-log", str(tmp_path / "requests.log"))
    root = sim.api_base.removesuffix("/v1")  # Azure's base is the resource, not /v1
    lines = [{"custom_id": "c1", "method": "POST", "url": "/v1/chat/completions",
              "body": {"messages": [{"role": "user", "content": "hi azure"}]}},
             {"custom_id": "e1", "method": "POST", "url": "/v1/embeddings", "body": {"input": "vector me"}}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    p = cli("run", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out"), "--model", "azure/sim-deploy",
            "--api-base", root, "--api-version", "2024-10-21", "--transport", transport, "--quiet",
            env={"AZURE_API_KEY": "azure-key-123"})
    assert p.returncode == 0, p.stderr
    out = {r["custom_id"]: r for r in map(json.loads, (tmp_path / "out" / "results.jsonl").read_text().splitlines())}
    assert out["c1"]["error"] is None and out["c1"]["response"]["body"]["choices"][0]["message"]["content"] == \
        "echo: hi azure"
    assert out["e1"]["error"] is None and out["e1"]["response"]["body"]["data"][0]["embedding"]
    wrong = cli("run", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out2"), "--model", "azure/sim-deploy",
                "--api-base", root, "--api-version", "2024-10-21", "--transport", transport, "--quiet",
                env={"AZURE_API_KEY": "not-the-key"})
    assert wrong.returncode == 1 and "not-the-key" not in wrong.stderr + wrong.stdout


@pytest.mark.parametrize("api_base, hosted", [(None, True), ("https://api.openai.com/v1", True),
                                              ("http://127.0.0.1:8000/v1", False)])
def test_run_tells_each_lane_whether_the_base_it_calls_is_the_providers_own(api_base, hosted):
    import argparse

    from promptforge_dagster.cli import build_lanes

    args = argparse.Namespace(rpm=None, tpm=None, rate_window=5.0, rpm_hint=None, tpm_hint=None, max_in_flight=None,
                              model="openai/gpt-4o-mini", api_base=api_base)
    lanes = build_lanes(args, "k")
    assert lanes.controller(lanes.lane("gpt-4o-mini")).cfg.hosted is hosted
    assert lanes.controller(lanes.lane("anthropic/claude-sonnet-4")).cfg.hosted  # the job's base serves its provider only
