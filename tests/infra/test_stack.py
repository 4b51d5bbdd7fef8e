"""The Pulumi program under pulumi.runtime.set_mocks (no cloud, no Pulumi CLI): every
resource exists and is wired to the right others (bucket -> trigger filter -> receiver),
IAM grants no owner/editor roles and nothing to allUsers/allAuthenticatedUsers, the
buckets are private, the receiver is internal and invocable only by Eventarc's account,
and the provider-keys secret is readable only by the run pods' account."""

import pulumi
import pytest


class Recorder(pulumi.runtime.Mocks):
    def __init__(self):
        self.resources = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outputs = dict(args.inputs)
        if args.typ == "gcp:serviceaccount/account:Account":
            outputs["email"] = f"{args.inputs['accountId']}@proj.iam.gserviceaccount.com"
            outputs["name"] = f"projects/proj/serviceAccounts/{outputs['email']}"
        if args.typ == "gcp:cloudrunv2/service:Service":
            outputs["uri"] = f"https://{args.inputs['name']}-xyz.a.run.app"
        if args.typ == "random:index/randomPassword:RandomPassword":
            outputs["result"] = "generated-" + "x" * (int(args.inputs["length"]) - 10)
        if args.typ == "gcp:container/cluster:Cluster":
            outputs.update(endpoint="10.0.0.1", masterAuth={"clusterCaCertificate": "Q0E="})
        self.resources.append((args.typ, args.name, outputs))
        return [f"{args.name}_id", outputs]

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "gcp:organizations/getProject:getProject":
            return {"number": "123456789", "projectId": "proj"}
        if args.token == "gcp:storage/getProjectServiceAccount:getProjectServiceAccount":
            return {"emailAddress": "service-123@gs-project-accounts.iam.gserviceaccount.com", "project": "proj"}
        return {}


MOCKS = Recorder()

from infra.config import StackConfig  # noqa: E402
from infra.program import build  # noqa: E402

CFG = StackConfig(project="proj", region="europe-west1", prefix="pf-test",
                  image="europe-west1-docker.pkg.dev/proj/promptforge/promptforge:0.1.0")


def of(typ):
    return [(name, out) for t, name, out in MOCKS.resources if t == typ]


def one(typ, name_part=""):
    found = [(n, o) for n, o in of(typ) if name_part in n]
    assert len(found) == 1, (typ, name_part, [n for n, _ in of(typ)])
    return found[0][1]


@pytest.fixture(scope="module")
def stack():
    import asyncio

    # Pulumi's test mode runs on the current event loop; earlier tests (asyncio.run) leave
    # none or a closed one behind, so give it a fresh one
    asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_mocks(MOCKS, project="promptforge", stack="test", preview=False)
    MOCKS.resources.clear()

    @pulumi.runtime.test
    def run():
        s = build(CFG)
        urns = [r.urn for r in (s.events.trigger, s.dagster.release, s.storage.output_bucket, s.compute.cluster,
                                s.events.invoker)]
        return pulumi.Output.all(*urns)

    run()
    return MOCKS.resources


def email(key):
    return f"serviceAccount:{CFG.prefix}-{key}@proj.iam.gserviceaccount.com"


def test_every_concern_is_present(stack):
    types = {t for t, _, _ in stack}
    for typ in ["gcp:storage/bucket:Bucket", "gcp:eventarc/trigger:Trigger", "gcp:cloudrunv2/service:Service",
                "gcp:firestore/database:Database", "gcp:firestore/index:Index", "gcp:container/cluster:Cluster",
                "gcp:artifactregistry/repository:Repository", "gcp:secretmanager/secret:Secret",
                "kubernetes:helm.sh/v3:Release", "kubernetes:core/v1:ServiceAccount"]:
        assert typ in types, typ
    components = {t for t, _, _ in stack if t.startswith("promptforge:")}
    assert components == {"promptforge:identity:Identity", "promptforge:storage:Storage",
                          "promptforge:data:Compute", "promptforge:events:Events",
                          "promptforge:dagster:DagsterPlatform"}
    assert len(of("gcp:serviceaccount/account:Account")) == 4  # one per component


def test_trigger_filters_the_input_bucket_and_delivers_to_the_receiver(stack):
    trigger = one("gcp:eventarc/trigger:Trigger")
    criteria = {c["attribute"]: c["value"] for c in trigger["matchingCriterias"]}
    assert criteria == {"type": "google.cloud.storage.object.v1.finalized", "bucket": CFG.input_bucket}
    receiver = one("gcp:cloudrunv2/service:Service")
    assert trigger["destination"]["cloudRunService"]["service"] == receiver["name"]
    assert trigger["serviceAccount"] == email("eventarc").split(":", 1)[1]
    env = {e["name"]: e["value"] for e in receiver["template"]["containers"][0]["envs"]}
    assert env["PROMPTFORGE_INPUT_BUCKET"] == CFG.input_bucket and env["PROMPTFORGE_REGISTRY"] == "firestore://proj"


def test_the_receiver_verifies_tokens_for_its_own_url_signed_by_the_trigger_only(stack):
    receiver = one("gcp:cloudrunv2/service:Service")
    env = {e["name"]: e["value"] for e in receiver["template"]["containers"][0]["envs"]}
    assert "RECEIVER_INSECURE" not in env
    assert env["RECEIVER_AUDIENCE"] == f"https://{CFG.prefix}-receiver-123456789.{CFG.region}.run.app"
    assert env["RECEIVER_ALLOWED_EMAILS"] == email("eventarc").split(":", 1)[1]
    assert env["RECEIVER_ALLOWED_EMAILS"] == one("gcp:eventarc/trigger:Trigger")["serviceAccount"]


SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret value in mocks


def revealed(value):
    return value["value"] if isinstance(value, dict) and SECRET_SIG in value else value


def test_dagster_run_storage_uses_a_generated_password_from_its_own_secret(stack):
    password = one("random:index/randomPassword:RandomPassword")
    assert password["length"] >= 24 and password.get("special") is False
    db_secret = one("gcp:secretmanager/secret:Secret", "db-password")
    assert db_secret["secretId"] == f"{CFG.prefix}-dagster-db-password"
    version = one("gcp:secretmanager/secretVersion:SecretVersion", "db-password")
    k8s_secret = one("kubernetes:core/v1:Secret", "db-secret")
    string_data = k8s_secret["stringData"]
    assert SECRET_SIG in string_data  # the provider keeps it a secret in state
    assert revealed(version["secretData"]) == string_data["value"]["postgresql-password"] == password["result"]
    values = one("kubernetes:helm.sh/v3:Release")["values"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"] == k8s_secret["metadata"]["name"]
    assert values["postgresql"]["existingSecret"] == k8s_secret["metadata"]["name"]
    assert "postgresqlPassword" not in values["postgresql"]  # the chart's default ("test") is never used


def test_receiver_is_internal_and_only_eventarc_can_invoke_it(stack):
    receiver = one("gcp:cloudrunv2/service:Service")
    assert receiver["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert receiver["template"]["serviceAccount"] == email("receiver").split(":", 1)[1]
    invokers = [o for _, o in of("gcp:cloudrunv2/serviceIamMember:ServiceIamMember") if o["role"] == "roles/run.invoker"]
    assert [o["member"] for o in invokers] == [email("eventarc")]


def test_buckets_are_private_with_lifecycle_rules(stack):
    buckets = {o["name"]: o for _, o in of("gcp:storage/bucket:Bucket")}
    assert set(buckets) == {CFG.input_bucket, CFG.output_bucket}
    for b in buckets.values():
        assert b["uniformBucketLevelAccess"] is True and b["publicAccessPrevention"] == "enforced"
    suffixes = [s for r in buckets[CFG.output_bucket]["lifecycleRules"]
                for s in (r["condition"].get("matchesSuffixes") or [])]
    assert ".pfck" in suffixes and ".part.jsonl" in suffixes


IAM_TYPES = ("gcp:projects/iAMMember:IAMMember", "gcp:storage/bucketIAMMember:BucketIAMMember",
             "gcp:serviceaccount/iAMMember:IAMMember", "gcp:secretmanager/secretIamMember:SecretIamMember",
             "gcp:cloudrunv2/serviceIamMember:ServiceIamMember")


def test_no_broad_roles_and_nothing_public(stack):
    grants = [o for t, _, o in stack if t in IAM_TYPES]
    assert len(grants) >= 10
    for g in grants:
        assert g["role"] not in ("roles/owner", "roles/editor", "roles/viewer"), g
        assert g["member"] not in ("allUsers", "allAuthenticatedUsers"), g
        assert not g["role"].endswith(".admin") or g["role"] == "roles/storage.objectAdmin", g


def test_each_provider_key_is_its_own_secret_readable_only_by_run_pods(stack):
    keys = [o for _, o in of("gcp:secretmanager/secret:Secret") if (o.get("labels") or {}).get("promptforge")]
    assert sorted(o["secretId"] for o in keys) == sorted(CFG.key_secret_id(v) for v in CFG.provider_key_vars)
    assert len(keys) == 3 and CFG.key_secret_id("OPENAI_API_KEY") == f"{CFG.prefix}-openai-api-key"
    readers = [o for _, o in of("gcp:secretmanager/secretIamMember:SecretIamMember")]
    assert [(o["role"], o["member"]) for o in readers] == [("roles/secretmanager.secretAccessor", email("runner"))] * 3
    project_roles = [o["role"] for _, o in of("gcp:projects/iAMMember:IAMMember")]
    assert "roles/secretmanager.secretAccessor" not in project_roles  # never project-wide


def test_run_pods_use_workload_identity_and_the_chart_is_configured(stack):
    wi = [o["member"] for _, o in of("gcp:serviceaccount/iAMMember:IAMMember")]
    assert f"serviceAccount:proj.svc.id.goog[{CFG.dagster_namespace}/{CFG.run_ksa}]" in wi
    ksa = one("kubernetes:core/v1:ServiceAccount", "runner")
    assert ksa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == email("runner").split(":", 1)[1]
    release = one("kubernetes:helm.sh/v3:Release")
    values = release["values"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] is True
    assert values["postgresql"]["enabled"] is True
    logs = values["computeLogManager"]  # dagster-gcp's, into the output bucket (the runner can write there)
    assert logs["type"] == "GCSComputeLogManager" and logs["config"]["gcsComputeLogManager"]["bucket"] == CFG.output_bucket
    assert release["version"] == CFG.dagster_chart_version
    code = values["dagster-user-deployments"]["deployments"][0]
    env = {e["name"]: e["value"] for e in code["env"]}
    assert env["PROMPTFORGE_OUTPUT_BUCKET"] == CFG.output_bucket and env["PROMPTFORGE_INPUT_BUCKET"] == CFG.input_bucket
    assert code["dagsterApiGrpcArgs"] == ["-m", "promptforge_dagster.definitions"]
    cluster = one("gcp:container/cluster:Cluster")
    assert cluster["enableAutopilot"] is True


def test_lifecycle_rules_never_delete_the_working_state_of_a_job_that_has_not_published(stack):
    """Working state (parts, checkpoint, scan) ages out only from the Custom-Time an attempt
    stamps when it publishes; the age rule covers only what a job publishes."""
    out = one("gcp:storage/bucket:Bucket", "outputs")
    rules = out["lifecycleRules"]
    working = [r for r in rules if ".part.jsonl" in (r["condition"].get("matchesSuffixes") or [])]
    assert len(working) == 1
    cond = working[0]["condition"]
    assert cond.get("daysSinceCustomTime") == CFG.checkpoint_retention_days and not cond.get("age")
    for rule in rules:
        if rule["condition"].get("age"):
            suffixes = rule["condition"].get("matchesSuffixes") or []
            assert suffixes and not any(s in suffixes for s in (".pfck", "/scan.json", ".part.jsonl")), rule


def test_the_jobs_collection_has_an_index_for_each_paging_direction(stack):
    indexes = of("gcp:firestore/index:Index")
    orders = sorted(tuple(f["order"] for f in out["fields"]) for _name, out in indexes)
    assert orders == [("ASCENDING", "ASCENDING", "ASCENDING"), ("ASCENDING", "DESCENDING", "DESCENDING")]



def test_infra_packages_stay_out_of_the_runtime_image():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    runtime = " ".join(project["project"]["dependencies"])
    assert "pulumi" not in runtime and any(d.startswith("pulumi==") for d in project["dependency-groups"]["infra"])
    assert "dagster-gcp" in runtime  # the run pods write compute logs with it
    assert "--no-group infra" in (root / "Dockerfile").read_text()
