"""template.yaml holds the invariants the code relies on (`sam validate --lint` runs in `make test` as well)."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from model.adapters.table import BY_TIME, TTL, table_definition, touchpoint_sk

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("lightgbm", "scipy", "pandas", "sklearn")


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML with CloudFormation's short tags (!Ref, !GetAtt, !Sub, ...) read as their long forms."""


def _tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return dict(yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader))  # a SafeLoader subclass


def _of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return _of_type(template, "AWS::Serverless::Function")


def test_template_parses_as_sam(template: dict[str, Any]) -> None:
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    assert set(_functions(template)) == {
        "IngestFunction",
        "IngestQueueFunction",
        "AggregatorFunction",
        "ScoreFunction",
        "AudienceFunction",
    }


def test_globals_runtime_architecture_environment(template: dict[str, Any]) -> None:
    fn = template["Globals"]["Function"]
    assert fn["Runtime"] == "python3.12"
    assert fn["Architectures"] == ["arm64"]
    assert fn["Tracing"] == "Active"
    assert fn["CodeUri"] == "."
    env = fn["Environment"]["Variables"]
    assert env["NBC_TABLE_NAME"] == {"Ref": "Table"}
    assert env["NBC_MODEL_STORE"] == {"Fn::Sub": "s3://${ModelBucket}/models"}
    assert env["NBC_REGION"] == {"Ref": "AWS::Region"}
    for key in ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"):
        assert env[key], key


def test_every_function_is_a_makefile_zip_build_whose_handler_exists(template: dict[str, Any]) -> None:
    makefile = (ROOT / "Makefile").read_text()
    for logical_id, res in _functions(template).items():
        props = res["Properties"]
        assert props.get("PackageType", "Zip") == "Zip", f"{logical_id}: image builds need Docker"
        assert res["Metadata"]["BuildMethod"] == "makefile", logical_id
        module_name, attr = props["Handler"].rsplit(".", 1)
        folder = module_name.split(".")[1]
        assert (ROOT / Path(*module_name.split("."))).with_suffix(".py").is_file(), logical_id
        handler = getattr(importlib.import_module(module_name), attr)
        assert callable(handler), logical_id
        # `sam build` runs `make build-<LogicalId>`: the target must build this very function folder.
        target = re.search(rf"^build-{logical_id}:\n\t(.+)$", makefile, re.MULTILINE)
        assert target, f"Makefile has no build-{logical_id} target"
        assert re.search(rf"\$\(BUILD_FUNCTION\) {folder} ", target.group(1)), target.group(1)


def test_every_function_logs_to_a_group_that_expires(template: dict[str, Any]) -> None:
    for res in _functions(template).values():
        group = res["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert template["Resources"][group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_table_matches_model_table_definition(template: dict[str, Any]) -> None:
    expected = table_definition("ignored")
    props = template["Resources"]["Table"]["Properties"]
    assert "TableName" not in props  # CloudFormation names it; the functions get it from NBC_TABLE_NAME
    for key in ("BillingMode", "AttributeDefinitions", "KeySchema", "LocalSecondaryIndexes"):
        assert props[key] == expected[key], key
    assert props["LocalSecondaryIndexes"][0]["IndexName"] == BY_TIME
    assert props["StreamSpecification"]["StreamViewType"] == expected["StreamSpecification"]["StreamViewType"]
    assert props["TimeToLiveSpecification"] == {"AttributeName": TTL, "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["DeletionProtectionEnabled"] is True
    assert template["Resources"]["Table"]["DeletionPolicy"] == "Retain"


def test_model_bucket_is_private_versioned_encrypted_tls_only(template: dict[str, Any]) -> None:
    props = template["Resources"]["ModelBucket"]["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    block = props["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    policies = [
        p
        for p in _of_type(template, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": "ModelBucket"}
    ]
    (statement,) = [
        s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
    ]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def _statements(props: dict[str, Any]) -> list[dict[str, Any]]:
    """Inline statements; a conditional one (Fn::If, e.g. the configuration document's) counts with its branch."""
    out: list[dict[str, Any]] = []
    for policy in props.get("Policies", []):
        assert isinstance(policy, dict), f"only inline statements, got {policy}"
        assert "Statement" in policy, f"only inline statements, got {policy}"
        for st in policy["Statement"]:
            if "Fn::If" in st:
                out.extend(b for b in st["Fn::If"][1:] if b != {"Ref": "AWS::NoValue"})
            else:
                out.append(st)
    return out


def test_configuration_document_is_passed_everywhere_and_readable_only_there(template: dict[str, Any]) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["NBC_CONFIG_LOCATION"] == {"Ref": "ConfigLocation"}
    assert template["Parameters"]["ConfigLocation"]["Default"] == ""
    for logical_id, res in _functions(template).items():
        reads = {st["Sid"]: st for st in _statements(res["Properties"]) if st.get("Sid", "").startswith("ReadConfig")}
        if not reads:
            continue  # a function without the grant cannot start with a location set: listed below
        assert reads["ReadConfigurationObject"]["Action"] == "s3:GetObject", logical_id
        assert "ConfigLocation" in json.dumps(reads["ReadConfigurationObject"]["Resource"]), logical_id
        assert reads["ReadConfigurationParameter"]["Action"] == "ssm:GetParameter", logical_id
        assert "${ConfigLocation}" in json.dumps(reads["ReadConfigurationParameter"]["Resource"]), logical_id
    granted = [
        fid
        for fid, res in _functions(template).items()
        if any(st.get("Sid") == "ReadConfigurationParameter" for st in _statements(res["Properties"]))
    ]
    assert set(granted) == set(_functions(template))  # every function reads it at cold start
    task = template["Resources"]["TrainingTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert {"Name": "NBC_CONFIG_LOCATION", "Value": {"Ref": "ConfigLocation"}} in task["Environment"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_every_function_has_a_least_privilege_policy(template: dict[str, Any]) -> None:
    for logical_id, res in _functions(template).items():
        statements = _statements(res["Properties"])
        assert statements, f"{logical_id} has no policy of its own"
        for st in statements:
            actions = _as_list(st["Action"])
            assert st["Effect"] == "Allow"
            assert not any(a == "*" or a.endswith(":*") for a in actions), (logical_id, actions)
            assert "*" not in _as_list(st["Resource"]), (logical_id, st)
            if any(a.startswith("dynamodb:") for a in actions):
                assert st["Resource"] == {"Fn::GetAtt": ["Table", "Arn"]}, (logical_id, st)
                assert "dynamodb:Scan" not in actions, logical_id
    # Only the scoring functions (API and audience) read models; nothing but the HTTP ingest (erasure) deletes.
    for logical_id, res in _functions(template).items():
        granted = {
            a
            for st in _statements(res["Properties"])
            if st.get("Sid") != "ReadConfigurationObject"  # the configuration document, not models
            for a in _as_list(st["Action"])
        }
        assert ("s3:GetObject" in granted) == (logical_id in {"ScoreFunction", "AudienceFunction"}), logical_id
        assert ("dynamodb:DeleteItem" in granted) == (logical_id == "IngestFunction"), logical_id


def test_sqs_ingest_has_dead_letter_queue_and_partial_failures(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    events = resources["IngestQueueFunction"]["Properties"]["Events"]
    (sqs,) = [e["Properties"] for e in events.values() if e["Type"] == "SQS"]
    assert sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue_id = sqs["Queue"]["Fn::GetAtt"][0]
    redrive = resources[queue_id]["Properties"]["RedrivePolicy"]
    dlq_id = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert resources[dlq_id]["Type"] == "AWS::SQS::Queue"
    assert 1 <= redrive["maxReceiveCount"] <= 10
    # The queue must outlast retries of a slow batch: visibility >= 6 x the consumer's timeout.
    assert (
        resources[queue_id]["Properties"]["VisibilityTimeout"]
        >= 6 * resources["IngestQueueFunction"]["Properties"]["Timeout"]
    )


def test_aggregator_stream_source_bisects_retries_and_keeps_failures(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    (stream,) = [e["Properties"] for e in resources["AggregatorFunction"]["Properties"]["Events"].values()]
    assert stream["Stream"] == {"Fn::GetAtt": ["Table", "StreamArn"]}
    assert stream["StartingPosition"] == "LATEST"
    assert stream["BisectBatchOnFunctionError"] is True
    assert 0 < stream["MaximumRetryAttempts"] <= 10
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    on_failure = stream["DestinationConfig"]["OnFailure"]
    assert on_failure["Type"] == "SQS"
    assert resources[on_failure["Destination"]["Fn::GetAtt"][0]]["Type"] == "AWS::SQS::Queue"
    # The filter lets touchpoints through and keeps the aggregator's own AGG writes out (no feedback loop).
    (flt,) = stream["FilterCriteria"]["Filters"]
    pattern = json.loads(flt["Pattern"])
    prefix = pattern["dynamodb"]["Keys"]["SK"]["S"][0]["prefix"]
    assert touchpoint_sk("e-1").startswith(prefix)
    assert not "AGG".startswith(prefix)
    assert not "PROFILE".startswith(prefix)
    assert "INSERT" in pattern["eventName"]
    assert "REMOVE" not in pattern["eventName"]
    # The local stream pump applies the same filter (nbc/local/aws.py), so local runs see what Lambda sees.
    from nbc.local.aws import _passes_filter

    def record(event: str, sk: str) -> dict[str, Any]:
        return {"eventName": event, "dynamodb": {"Keys": {"SK": {"S": sk}}}}

    for event in ("INSERT", "MODIFY", "REMOVE"):
        for sk in (touchpoint_sk("e-1"), "AGG", "PROFILE"):
            assert _passes_filter(record(event, sk)) == (event in pattern["eventName"] and sk.startswith(prefix))


def _routes(template: dict[str, Any]) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    routes = {}
    for logical_id, res in _functions(template).items():
        for event in res["Properties"].get("Events", {}).values():
            if event["Type"] == "HttpApi":
                p = event["Properties"]
                routes[(p["Method"], p["Path"])] = (logical_id, p)
    return routes


def test_http_api_requires_auth_on_every_route_but_health(template: dict[str, Any]) -> None:
    api = template["Resources"]["HttpApi"]["Properties"]
    default = api["Auth"]["DefaultAuthorizer"]
    jwt = api["Auth"]["Authorizers"][default]["JwtConfiguration"]
    assert jwt == {"issuer": {"Ref": "JwtIssuer"}, "audience": {"Ref": "JwtAudience"}}
    for (method, path), (_, props) in _routes(template).items():
        assert props["ApiId"] == {"Ref": "HttpApi"}
        authorizer = props.get("Auth", {}).get("Authorizer", default)
        if (method, path) == ("GET", "/health"):
            assert authorizer == "NONE"
        else:
            assert authorizer == default, (method, path)
            assert props["Auth"]["AuthorizationScopes"], (method, path)


def _api_route(routes: dict[tuple[str, str], Any], method: str, path: str) -> str | None:
    """The function API Gateway sends `method path` to: the most specific matching route wins."""
    segments = path.strip("/").split("/")
    best: tuple[int, str] | None = None
    for (m, template_path), (logical_id, _) in routes.items():
        if m != method:
            continue
        parts = template_path.strip("/").split("/")
        greedy = parts[-1].endswith("+}")
        fixed = parts[:-1] if greedy else parts
        if len(segments) < len(fixed) + greedy or (not greedy and len(segments) != len(parts)):
            continue
        if all(p.startswith("{") or p == s for p, s in zip(fixed, segments, strict=False)):
            score = sum(not p.startswith("{") for p in fixed) * 2 + (not greedy)
            if best is None or score > best[0]:
                best = (score, logical_id)
    return best[1] if best else None


def test_every_route_of_the_code_reaches_its_function(template: dict[str, Any]) -> None:
    from functions.ingest.app import router as ingest_router
    from functions.score.app import router as score_router

    routes = _routes(template)
    owners = {"IngestFunction": ingest_router, "ScoreFunction": score_router}
    for logical_id, router in owners.items():
        for route in router.routes:
            for method in route.methods:
                path = re.sub(r"\{[^}]+\}", "x-1", route.path)
                assert _api_route(routes, method, path) == logical_id, (method, route.path)


def test_alarms_cover_errors_dead_letters_and_scoring_latency(template: dict[str, Any]) -> None:
    alarms = [a["Properties"] for a in _of_type(template, "AWS::CloudWatch::Alarm").values()]

    def dims(alarm: dict[str, Any]) -> dict[str, Any]:
        return {d["Name"]: d["Value"] for d in alarm["Dimensions"]}

    errors = {dims(a)["FunctionName"]["Ref"] for a in alarms if a["MetricName"] == "Errors"}
    assert errors == set(_functions(template))
    depth = {
        dims(a)["QueueName"]["Fn::GetAtt"][0] for a in alarms if a["MetricName"] == "ApproximateNumberOfMessagesVisible"
    }
    assert depth == {"TouchpointDeadLetterQueue", "AggregatorFailureQueue"}
    for alarm in alarms:
        if alarm["MetricName"] == "ApproximateNumberOfMessagesVisible":
            assert alarm["Threshold"] == 0
            assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    (p99,) = [a for a in alarms if a.get("ExtendedStatistic") == "p99"]
    assert p99["MetricName"] == "Duration"
    assert dims(p99)["FunctionName"] == {"Ref": "ScoreFunction"}
    assert all(a["AlarmActions"] for a in alarms)


def test_retraining_is_a_scheduled_export_train_promote_state_machine(template: dict[str, Any]) -> None:
    sm = template["Resources"]["RetrainStateMachine"]
    assert sm["Type"] == "AWS::Serverless::StateMachine"
    props = sm["Properties"]
    assert [e["Type"] for e in props["Events"].values()] == ["Schedule"]
    states = props["Definition"]["States"]
    # Follow the happy path from StartAt: export -> poll -> train+evaluate -> promote.
    path, name = [], props["Definition"]["StartAt"]
    while name and name not in path:
        path.append(name)
        state = states[name]
        if state["Type"] == "Choice":  # the branch that does not fail; every other outcome must fail loudly
            (name,) = [c["Next"] for c in state["Choices"] if states[c["Next"]]["Type"] != "Fail"]
            assert states[state["Default"]]["Type"] in {"Fail", "Wait"}, state
        else:
            name = state.get("Next")
    resources = [states[n].get("Resource", "") for n in path]
    assert resources[0].endswith("dynamodb:exportTableToPointInTime")
    assert "arn:aws:states:::aws-sdk:dynamodb:describeExport" in resources
    commands = [
        states[n]["Parameters"]["Overrides"]["ContainerOverrides"][0]["Command.$"]["Fn::Sub"]
        for n in path
        if states[n].get("Resource") == "arn:aws:states:::ecs:runTask.sync"
    ]
    assert len(commands) == 2
    for word in ("'nbc', 'train'", "'--source'", "'--store'"):
        assert word in commands[0]
    assert "'nbc', 'promote'" in commands[1]
    assert states[path[-1]]["Type"] == "Succeed"
    assert "PromotionRefused" in states  # a refused challenger is visible (and alarmed), not a silent success
    task = template["Resources"]["TrainingTaskDefinition"]["Properties"]
    assert task["ContainerDefinitions"][0]["Image"] == {"Ref": "TrainingImageUri"}
    assert task["RequiresCompatibilities"] == ["FARGATE"]


def test_no_function_ships_the_training_stack() -> None:
    """The runtime dependencies (the artifacts' requirements) exclude the heavy training libraries."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    runtime = re.search(r"^dependencies = \[(.*?)^\]", pyproject, re.MULTILINE | re.DOTALL)
    assert runtime
    assert not [h for h in (*HEAVY, "scikit-learn", "dask") if h in runtime.group(1)]


def _state_machine_commands(template: dict[str, Any]) -> list[list[str]]:
    """The container commands of the retraining run, with execution names and bucket filled in."""
    states = template["Resources"]["RetrainStateMachine"]["Properties"]["Definition"]["States"]
    commands = []
    for state in states.values():
        if state.get("Resource") != "arn:aws:states:::ecs:runTask.sync":
            continue
        text = state["Parameters"]["Overrides"]["ContainerOverrides"][0]["Command.$"]["Fn::Sub"]
        text = text.replace("${ModelBucket}", "bucket")
        text = re.sub(r"States\.Format\('([^']*)\{\}', \$\$\.Execution\.Name\)", r"'\g<1>run-1'", text)
        text = text.replace("$$.Execution.Name", "'run-1'")
        inner = re.fullmatch(r"States\.Array\((.*)\)", " ".join(text.split()))
        assert inner, text
        commands.append(re.findall(r"'([^']*)'", inner.group(1)))
    return commands


def test_retraining_commands_are_valid_nbc_invocations(template: dict[str, Any]) -> None:
    """Every argument the state machine passes is an option `nbc` knows (a rename would break retraining)."""
    import typer.main

    from nbc.cli import app

    group = typer.main.get_command(app)
    commands = _state_machine_commands(template)
    assert [c[:2] for c in commands] == [["nbc", "train"], ["nbc", "promote"]]
    params = {}
    for argv in commands:
        command = group.get_command(None, argv[1])  # type: ignore[arg-type]
        assert command is not None, argv
        params[argv[1]] = command.make_context(argv[1], argv[2:]).params  # raises on an unknown option
    assert params["train"]["source"] == "s3://bucket/exports/run-1"
    for name in ("train", "promote"):
        assert params[name]["store"] == "s3://bucket/models"
        assert params[name]["version"] == "run-1"


def test_training_image_copies_what_exists_and_installs_the_training_extra() -> None:
    dockerfile = (ROOT / "training" / "Dockerfile").read_text()
    sources = [src for line in dockerfile.splitlines() if line.startswith("COPY ") for src in line.split()[1:-1]]
    assert sources
    assert [src for src in sources if not (ROOT / src).exists()] == []
    for package in ("model", "functions", "training", "nbc"):  # what pyproject's wheel packages
        assert package in sources
    extras = re.findall(r"--extra (\S+)", dockerfile)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "training" in extras
    assert all(re.search(rf"^{e} = \[", pyproject, re.MULTILINE) for e in extras)
    assert "libgomp1" in dockerfile  # lib_lightgbm.so links libgomp, absent from slim images
