"""Invariants of ecs/pipeline.yaml that cfn-lint and checkov do not know.

Each test holds one finding of a review of the stack against AWS's
documentation, so that it cannot come back unnoticed. The template is read
with cfn-lint's own decoder (short-form intrinsics become {"Ref": ...},
{"Fn::Sub": ...}). Run by scripts/check-config:

    python -m unittest discover -s ecs/tests
"""

import json
import math
import re
import unittest
from pathlib import Path

import yaml
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE, _ = decode(str(ROOT / "ecs" / "pipeline.yaml"))
RESOURCES = TEMPLATE["Resources"]
PARAMETERS = TEMPLATE["Parameters"]

# Network interfaces of the instance types the docs discuss (EC2 User
# Guide, "Maximum IP addresses per network interface"). An awsvpc task
# takes one; the first is the instance's own.
NETWORK_INTERFACES = {"t3.small": 3, "t3.medium": 3, "t3.large": 3, "t4g.small": 3, "m6i.large": 3}
# vCPUs x 1024 and MiB of memory of the same types.
CPU_UNITS = {"t3.small": 2048, "t3.medium": 2048, "t3.large": 2048, "t4g.small": 2048, "m6i.large": 2048}
MEMORY_MIB = {"t3.small": 2048, "t3.medium": 4096, "t3.large": 8192, "t4g.small": 2048, "m6i.large": 8192}


def default(name):
    return PARAMETERS[name]["Default"]


def of_type(kind):
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


def substituted(value):
    """The text of an Fn::Sub with every ${...} replaced by a placeholder."""
    text = value["Fn::Sub"]
    if isinstance(text, list):
        text = text[0]
    numbers = {n for n, p in PARAMETERS.items() if p["Type"] == "Number"}
    return re.sub(r"\$\{([^}!]+)\}", lambda m: "1" if m.group(1) in numbers else "X", text)


def statements():
    """(role, statement) for every inline and managed policy statement."""
    for name, resource in RESOURCES.items():
        props = resource.get("Properties", {})
        documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
        if "PolicyDocument" in props and resource["Type"] == "AWS::IAM::ManagedPolicy":
            documents.append(props["PolicyDocument"])
        for document in documents:
            for statement in document["Statement"]:
                # `!If [Condition, statement, !Ref AWS::NoValue]`: the
                # statement, as it is when the condition holds.
                if "Fn::If" in statement:
                    statement = statement["Fn::If"][1]
                yield name, statement


def environment(container):
    """A container's variables that are always set (not those under Fn::If)."""
    return {e["Name"]: e["Value"] for e in container["Environment"] if "Name" in e}


def as_list(value):
    return value if isinstance(value, list) else [value]


class Network(unittest.TestCase):
    def test_tasks_reach_the_database_by_its_security_group_not_by_address(self):
        task_group = RESOURCES["TaskSecurityGroup"]["Properties"]
        for rule in task_group["SecurityGroupEgress"]:
            self.assertNotEqual(rule["FromPort"], 5432, "no inline PostgreSQL rule by CIDR")
        egress = [
            r["Properties"]
            for r in of_type("AWS::EC2::SecurityGroupEgress").values()
            if r["Properties"]["GroupId"] == {"Ref": "TaskSecurityGroup"} and "Condition" not in r
        ]
        self.assertEqual(len(egress), 1, egress)
        self.assertEqual(egress[0]["DestinationSecurityGroupId"], {"Ref": "DatabaseSecurityGroup"})
        self.assertEqual((egress[0]["FromPort"], egress[0]["ToPort"]), (5432, 5432))
        self.assertNotIn("CidrIp", egress[0])
        ingress = RESOURCES["DatabaseSecurityGroup"]["Properties"]["SecurityGroupIngress"]
        self.assertEqual([r["SourceSecurityGroupId"] for r in ingress], [{"Ref": "TaskSecurityGroup"}])

    def test_the_sources_port_is_let_out_only_when_it_is_not_443(self):
        egress = RESOURCES["TaskSecurityGroup"]["Properties"]["SecurityGroupEgress"]
        self.assertEqual([(r["FromPort"], r["ToPort"]) for r in egress], [(443, 443)])
        source = RESOURCES["TaskToSourceEgress"]
        self.assertEqual(source["Condition"], "SourceNotOn443")
        rule = source["Properties"]
        self.assertEqual(rule["GroupId"], {"Ref": "TaskSecurityGroup"})
        self.assertEqual((rule["FromPort"], rule["ToPort"]), ({"Ref": "SourcePort"}, {"Ref": "SourcePort"}))
        self.assertEqual(TEMPLATE["Conditions"]["SourceNotOn443"], {"Fn::Not": [{"Fn::Equals": [{"Ref": "SourcePort"}, 443]}]})

    def test_tasks_pull_the_collector_from_the_accounts_ecr_not_ecr_public(self):
        # ECR Public has no VPC endpoint: without NAT no task could pull it.
        for name in ("TransformerTaskDefinition", "ImporterTaskDefinition"):
            collector = next(c for c in RESOURCES[name]["Properties"]["ContainerDefinitions"] if c["Name"] == "collector")
            text, values = collector["Image"]["Fn::Sub"]
            self.assertEqual(text, "${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/api-pipeline/collector:${Tag}")
            self.assertEqual(values["Tag"], {"Fn::Select": [1, {"Fn::Split": [":", {"Ref": "CollectorImage"}]}]})
        self.assertIn("COLLECTOR_REPOSITORY=api-pipeline/collector", (ROOT / "ecs" / "deploy.sh").read_text())
        self.assertRegex(default("CollectorImage"), "^" + PARAMETERS["CollectorImage"]["AllowedPattern"] + "$")

    def test_the_capacity_provider_has_a_name_deploy_sh_checks(self):
        name = RESOURCES["CapacityProvider"]["Properties"]["Name"]
        self.assertEqual(name, {"Fn::Sub": "${AWS::StackName}-capacity"})
        self.assertIn("aws* | ecs* | fargate*)", (ROOT / "ecs" / "deploy.sh").read_text())

    def test_nothing_gets_a_public_address(self):
        text = (ROOT / "ecs" / "pipeline.yaml").read_text()
        self.assertNotIn("AssignPublicIp: ENABLED", text)
        self.assertFalse(RESOURCES["Database"]["Properties"]["PubliclyAccessible"])


class Scaling(unittest.TestCase):
    def test_the_service_leaves_its_task_count_to_the_scaling_policies(self):
        # With DesiredCount, every stack update resets the running count.
        self.assertNotIn("DesiredCount", RESOURCES["TransformerService"]["Properties"])

    def test_scale_out_from_zero_starts_exactly_one_task(self):
        policy = RESOURCES["TransformerScaleOutFromZero"]["Properties"]["StepScalingPolicyConfiguration"]
        self.assertEqual(policy["AdjustmentType"], "ChangeInCapacity")
        self.assertEqual([s["ScalingAdjustment"] for s in policy["StepAdjustments"]], [1])
        alarm = RESOURCES["TransformerMessagesWaitingWithNoTask"]["Properties"]
        # M of N: one late data point alone does not start a task.
        self.assertGreaterEqual(alarm["DatapointsToAlarm"], 2)
        self.assertLess(alarm["DatapointsToAlarm"], alarm["EvaluationPeriods"])
        # The desired count, which the policy raises at once; not the
        # running count, which stays 0 while an instance starts.
        names = [m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"] if "MetricStat" in m]
        self.assertIn("DesiredTaskCount", names)
        self.assertNotIn("RunningTaskCount", names)
        # A repeated call within the cooldown adds nothing: the cooldown
        # outlasts the alarm's window plus a minute of metric delay.
        window = alarm["EvaluationPeriods"] * 60
        self.assertGreater(policy["Cooldown"], window + 60)
        self.assertEqual(alarm["AlarmActions"], [{"Ref": "TransformerScaleOutFromZero"}])

    def test_defaults_leave_room_for_a_deployment_at_full_scale(self):
        instance = default("InstanceType")
        deployment = RESOURCES["TransformerService"]["Properties"]["DeploymentConfiguration"]
        transformers = math.ceil(int(default("TransformerMaxTasks")) * deployment["MaximumPercent"] / 100)
        needed = transformers + 1  # and the importer; migrate runs before a deployment starts
        per_instance = NETWORK_INTERFACES[instance] - 1
        self.assertGreaterEqual(per_instance * int(default("MaxInstances")), needed)
        # Network interfaces bind first: CPU and memory hold as many tasks.
        tasks = [r["Properties"] for r in of_type("AWS::ECS::TaskDefinition").values()]
        cpu = max(int(t["Cpu"]) for t in tasks)
        memory = max(int(t["Memory"]) for t in tasks)
        self.assertLessEqual(per_instance * cpu, CPU_UNITS[instance])
        # 10% of the memory is left to the OS and the ECS agent.
        self.assertLessEqual(per_instance * memory, MEMORY_MIB[instance] * 0.9)
        for task in tasks:
            limits = sum(c.get("Memory", c.get("MemoryReservation", 0)) for c in task["ContainerDefinitions"])
            self.assertLessEqual(limits, int(task["Memory"]), task["Family"])


class Permissions(unittest.TestCase):
    def test_no_wildcard_actions_and_resources_only_where_aws_allows_nothing_else(self):
        for role, statement in statements():
            if statement.get("Effect") != "Allow":
                continue
            for action in as_list(statement["Action"]):
                self.assertFalse(action.endswith("*"), f"{role}: {action}")
            if statement.get("Resource") == "*":
                self.assertEqual(as_list(statement["Action"]), ["xray:PutTraceSegments"], role)

    def test_listing_the_bucket_is_limited_to_the_pipelines_prefixes(self):
        listing = [(r, s) for r, s in statements() if "s3:ListBucket" in as_list(s["Action"])]
        self.assertEqual({r for r, _ in listing},
                         {"ImporterTaskRole", "TransformerTaskRole", "MigrateTaskRole", "OperatorTaskRole"})
        for role, statement in listing:
            # IfExists: HeadBucket and the 404 check of a GET carry no prefix.
            prefixes = statement["Condition"]["StringLikeIfExists"]["s3:prefix"]
            allowed = ("raw/*", "posts/*", "_state/*", "config/migrations/*")
            self.assertTrue(prefixes and all(p in allowed for p in prefixes), role)
            if role in ("ImporterTaskRole", "TransformerTaskRole"):
                self.assertIn("raw/*", prefixes, role)
            else:
                self.assertEqual(prefixes, ["config/migrations/*"], role)

    def test_every_task_reads_the_resources_file_and_migrations_the_stack_names_and_may(self):
        """RESOURCES_FILE for every task, MIGRATIONS_DIR for those of the
        transformer's image, set only when the parameter is; each role may
        read exactly the prefix the parameter's pattern keeps keys under."""
        self.assertTrue(re.fullmatch(PARAMETERS["ResourcesFile"]["AllowedPattern"], "config/resources/5b04923b67a05701.toml"))
        self.assertFalse(re.fullmatch(PARAMETERS["ResourcesFile"]["AllowedPattern"], "raw/posts/x.json"))
        self.assertTrue(re.fullmatch(PARAMETERS["MigrationsPrefix"]["AllowedPattern"], "config/migrations/8c0858ec41eff8fd/"))
        self.assertEqual(default("ResourcesFile"), "")
        tasks = {"ImporterTaskDefinition": ("ImporterTaskRole", ["RESOURCES_FILE"]),
                 "TransformerTaskDefinition": ("TransformerTaskRole", ["RESOURCES_FILE", "MIGRATIONS_DIR"]),
                 "MigrateTaskDefinition": ("MigrateTaskRole", ["RESOURCES_FILE", "MIGRATIONS_DIR"]),
                 "OperatorTaskDefinition": ("OperatorTaskRole", ["RESOURCES_FILE", "MIGRATIONS_DIR"])}
        parameter = {"RESOURCES_FILE": ("ResourcesFileGiven", "ResourcesFile", "config/resources/*"),
                     "MIGRATIONS_DIR": ("MigrationsGiven", "MigrationsPrefix", "config/migrations/*")}
        for task, (role, variables) in tasks.items():
            properties = RESOURCES[task]["Properties"]
            container = properties["ContainerDefinitions"][0]
            conditional = {e["Fn::If"][1]["Name"]: e["Fn::If"] for e in container["Environment"] if "Fn::If" in e}
            self.assertEqual(sorted(conditional), sorted(variables), task)
            readable = {json.dumps(r) for _, s in statements() if _ == role and "s3:GetObject" in as_list(s["Action"])
                        for r in as_list(s["Resource"])}
            for variable in variables:
                condition, name, prefix = parameter[variable]
                given, entry, otherwise = conditional[variable]
                self.assertEqual((given, otherwise), (condition, {"Ref": "AWS::NoValue"}), task)
                self.assertEqual(entry["Value"], {"Fn::Sub": "s3://${RawBucket}/${" + name + "}"}, task)
                self.assertIn(json.dumps({"Fn::Sub": "${RawBucket.Arn}/" + prefix}), readable, role)
            if "MIGRATIONS_DIR" in variables:
                # The copy goes to /tmp, on a root file system that is read-only.
                self.assertEqual(container["MountPoints"], [{"SourceVolume": "tmp", "ContainerPath": "/tmp"}], task)
                self.assertIn({"Name": "tmp"}, properties["Volumes"], task)

    def test_only_the_roles_that_connect_read_the_database_secret(self):
        database = {"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]}
        readers = {r: s["Resource"] for r, s in statements() if "secretsmanager:GetSecretValue" in as_list(s["Action"])}
        self.assertEqual(sorted(readers), ["ImporterTaskRole", "MigrateTaskRole", "OperatorTaskRole", "TransformerTaskRole"])
        self.assertNotIn(database, as_list(readers.pop("ImporterTaskRole")))
        for role, resource in readers.items():
            self.assertEqual(resource, database, role)
        for name in ("TransformerTaskDefinition", "MigrateTaskDefinition", "OperatorTaskDefinition"):
            container = RESOURCES[name]["Properties"]["ContainerDefinitions"][0]
            env = environment(container)
            self.assertEqual(env["DATABASE_SECRET"], {"Fn::GetAtt": ["Database", "MasterUserSecret.SecretArn"]})
            self.assertNotIn("Secrets", container, "the password is read, not injected at start")


class Database(unittest.TestCase):
    def test_only_the_operator_role_takes_from_the_dead_letter_queue_or_moves_messages(self):
        dlq = {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
        queue = {"Fn::GetAtt": ["Queue", "Arn"]}
        moving = {"sqs:StartMessageMoveTask", "sqs:ListMessageMoveTasks", "sqs:ReceiveMessage", "sqs:DeleteMessage"}
        for role, statement in statements():
            actions = set(as_list(statement["Action"]))
            resources = as_list(statement.get("Resource"))
            if actions & {"sqs:StartMessageMoveTask", "sqs:ListMessageMoveTasks"}:
                self.assertEqual((role, resources), ("OperatorTaskRole", [dlq]))
            if dlq in resources and actions & moving:
                self.assertEqual(role, "OperatorTaskRole", actions)
        # What redrive needs: SQS authorises a move task against both queues.
        operator = [s for r, s in statements() if r == "OperatorTaskRole"]
        granted = {(a, json.dumps(res, sort_keys=True)) for s in operator for a in as_list(s["Action"])
                   for res in as_list(s["Resource"])}
        for action in moving | {"sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"}:
            self.assertIn((action, json.dumps(dlq, sort_keys=True)), granted)
        self.assertIn(("sqs:SendMessage", json.dumps(queue, sort_keys=True)), granted)
        self.assertIn(("sqs:GetQueueAttributes", json.dumps(queue, sort_keys=True)), granted)

    def test_the_importer_reads_the_api_secrets_named_and_no_other(self):
        """ImporterSecretArns: read by the importer's role alone, and only
        when given (an empty list would be an invalid Resource)."""
        self.assertEqual(PARAMETERS["ImporterSecretArns"]["Type"], "CommaDelimitedList")
        self.assertEqual(default("ImporterSecretArns"), "")
        self.assertEqual(TEMPLATE["Conditions"]["ImporterSecretsGiven"],
                         {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "ImporterSecretArns"}]}, ""]}]})
        document = RESOURCES["ImporterTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]
        conditional = [s["Fn::If"] for s in document["Statement"] if "Fn::If" in s]
        self.assertEqual(conditional, [["ImporterSecretsGiven",
                                        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                                         "Resource": {"Ref": "ImporterSecretArns"}},
                                        {"Ref": "AWS::NoValue"}]])
        for role, statement in statements():
            if statement.get("Resource") == {"Ref": "ImporterSecretArns"}:
                self.assertEqual(role, "ImporterTaskRole")

    def test_the_importer_role_has_what_replay_needs(self):
        importer = [s for r, s in statements() if r == "ImporterTaskRole"]
        actions = {a for s in importer for a in as_list(s["Action"])}
        # List the archive, read each object's metadata (HeadObject is
        # s3:GetObject), send to the queue.
        self.assertTrue({"s3:ListBucket", "s3:GetObject", "sqs:SendMessage"} <= actions)
        listing = next(s for s in importer if "s3:ListBucket" in as_list(s["Action"]))
        # Today's archive, and the one from before resources.
        for prefix in ("raw/*", "posts/*"):
            self.assertIn(prefix, listing["Condition"]["StringLikeIfExists"]["s3:prefix"])

    def test_import_resources_takes_the_names_a_resources_file_gives(self):
        pattern = PARAMETERS["ImportResources"]["AllowedPattern"]
        for value in ("posts,comments", "tickets_v2=https://help.example.com/v2/tickets?per_page=100",
                      "Orders2,tickets=http://10.0.0.5:8080/t"):
            self.assertTrue(re.fullmatch(pattern, value), value)
        for value in ("", "posts,", "=https://x"):
            self.assertFalse(re.fullmatch(pattern, value), value)

    def test_the_schedule_imports_every_resource(self):
        importer = RESOURCES["ImporterTaskDefinition"]["Properties"]["ContainerDefinitions"]
        env = environment(next(c for c in importer if c["Name"] == "importer"))
        self.assertEqual(env["RESOURCES"], {"Ref": "ImportResources"})
        self.assertIn("posts", PARAMETERS["ImportResources"]["Default"].split(","))
        self.assertEqual(
            [r["Prefix"] for r in RESOURCES["RawBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
             if "Prefix" in r],
            ["raw/", "posts/"],
        )

    def test_storage_grows_by_itself_and_its_alarm_is_a_number_of_bytes(self):
        database = RESOURCES["Database"]["Properties"]
        self.assertEqual(database["MaxAllocatedStorage"], {"Ref": "DbMaxAllocatedStorage"})
        self.assertGreater(int(default("DbMaxAllocatedStorage")), int(default("DbAllocatedStorage")))
        alarm = RESOURCES["DatabaseStorageAlarm"]["Properties"]
        self.assertEqual(alarm["Threshold"], {"Ref": "DbFreeStorageAlarmBytes"})
        self.assertEqual(PARAMETERS["DbFreeStorageAlarmBytes"]["Type"], "Number")
        self.assertEqual(int(default("DbFreeStorageAlarmBytes")), 2 * 1024**3)
        # A missing data point is not a full disk.
        self.assertEqual(alarm["TreatMissingData"], "notBreaching")

    def test_engine_version_is_a_major_version_matching_the_parameter_group(self):
        version = RESOURCES["Database"]["Properties"]["EngineVersion"]
        self.assertRegex(version, r"^\d+$")
        family = RESOURCES["DatabaseParameters"]["Properties"]["Family"]
        self.assertEqual(family, f"postgres{version}")


class Telemetry(unittest.TestCase):
    def collector_config(self):
        return yaml.safe_load(substituted(RESOURCES["CollectorConfig"]["Properties"]["Value"]))

    def test_each_service_sends_to_a_collector_beside_it(self):
        for name in ("TransformerTaskDefinition", "ImporterTaskDefinition"):
            containers = {c["Name"]: c for c in RESOURCES[name]["Properties"]["ContainerDefinitions"]}
            service = next(c for n, c in containers.items() if n != "collector")
            collector = containers["collector"]
            self.assertFalse(collector["Essential"], "telemetry never stops the work")
            self.assertEqual(collector["Secrets"], [{"Name": "AOT_CONFIG_CONTENT", "ValueFrom": {"Ref": "CollectorConfig"}}])
            env = environment(service)
            self.assertEqual(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://127.0.0.1:4318")
            self.assertIn({"ContainerName": "collector", "Condition": "START"}, service["DependsOn"])

    def test_the_collector_listens_on_loopback_and_exports_traces_to_xray_and_metrics_to_cloudwatch(self):
        config = self.collector_config()
        self.assertEqual(config["receivers"]["otlp"]["protocols"], {"http": {"endpoint": "127.0.0.1:4318"}})
        pipelines = config["service"]["pipelines"]
        self.assertEqual(pipelines["traces"]["exporters"], ["awsxray"])
        self.assertEqual(pipelines["metrics"]["exporters"], ["awsemf"])
        for pipeline in pipelines.values():
            for kind in ("receivers", "processors", "exporters"):
                for component in pipeline[kind]:
                    self.assertIn(component, config[kind])
        emf = config["exporters"]["awsemf"]
        self.assertTrue(emf["retain_initial_value_of_delta_metric"], "a single error is not dropped")

    def test_alarms_and_dashboard_use_metrics_the_services_emit_and_the_collector_exports(self):
        emitted = set()
        for source in ROOT.glob("services/*/src/metrics.rs"):
            emitted |= set(re.findall(r'"((?:pipeline|messaging)\.[a-z_.]+)"', source.read_text()))
        selectors = [
            re.compile(selector)
            for declaration in self.collector_config()["exporters"]["awsemf"]["metric_declarations"]
            for selector in declaration["metric_name_selectors"]
        ]
        namespace = "X/pipeline"
        dashboard = json.loads(substituted(RESOURCES["Dashboard"]["Properties"]["DashboardBody"]))
        used = {RESOURCES["ErrorsAlarm"]["Properties"]["MetricName"]}
        for widget in dashboard["widgets"]:
            for metric in widget["properties"]["metrics"]:
                if metric[0] == namespace:
                    used.add(metric[1])
                elif isinstance(metric[0], dict):
                    used |= set(re.findall(r'MetricName=\\?"([a-z_.]+)', metric[0]["expression"]))
        self.assertTrue(used >= {"pipeline.errors", "pipeline.rows.applied", "pipeline.records.quarantined"})
        for metric in used:
            self.assertIn(metric, emitted, f"{metric} is not a metric of the services")
            self.assertTrue(any(s.search(metric) for s in selectors), f"the collector drops {metric}")

    def test_every_metric_the_services_emit_has_a_unit_cloudwatch_takes(self):
        # The EMF specification takes CloudWatch's unit names only
        # (MetricDatum.Unit); the services' UCUM annotations would be
        # passed through and the metric dropped.
        cloudwatch_units = {"Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
                            "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
                            "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
                            "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
                            "Gigabits/Second", "Terabits/Second", "Count/Second", "None"}
        ucum_to_cloudwatch = {"s": "Seconds", "ms": "Milliseconds", "By": "Bytes"}
        emitted = {}
        for source in ROOT.glob("services/*/src/metrics.rs"):
            text = source.read_text()
            for name, unit in re.findall(r'counter\(\s*"([a-z_.]+)",\s*"([^"]+)"', text):
                emitted[name] = ucum_to_cloudwatch.get(unit, "Count" if unit.startswith("{") else unit)
            for name in re.findall(r'seconds\(\s*"([a-z_.]+)"', text):
                emitted[name] = "Seconds"
        self.assertGreaterEqual(len(emitted), 13, emitted)
        descriptors = {d["metric_name"]: d for d in self.collector_config()["exporters"]["awsemf"]["metric_descriptors"]}
        for name, unit in emitted.items():
            self.assertIn(name, descriptors, f"{name} has no CloudWatch unit")
            self.assertIn(descriptors[name]["unit"], cloudwatch_units, name)
            self.assertEqual(descriptors[name]["unit"], unit, name)
            self.assertTrue(descriptors[name]["overwrite"], name)

    def test_each_task_writes_its_metrics_to_a_stream_of_its_own(self):
        config = self.collector_config()
        self.assertEqual(config["exporters"]["awsemf"]["log_stream_name"], "{TaskId}")
        # {TaskId} is aws.ecs.task.id, which only the ECS resource detector sets.
        processors = config["service"]["pipelines"]["metrics"]["processors"]
        detectors = [p for p in processors if p.startswith("resourcedetection")]
        self.assertEqual(len(detectors), 1, processors)
        self.assertIn("ecs", config["processors"][detectors[0]]["detectors"])

    def test_the_dashboards_search_quotes_names_with_dots(self):
        dashboard = json.loads(substituted(RESOURCES["Dashboard"]["Properties"]["DashboardBody"]))
        expressions = [m[0]["expression"] for w in dashboard["widgets"] for m in w["properties"]["metrics"]
                       if isinstance(m[0], dict)]
        self.assertTrue(expressions)
        for expression in expressions:
            schema = re.search(r"\{([^}]*)\}", expression).group(1)
            for part in schema.split(","):
                if not re.fullmatch(r"[A-Za-z0-9_]+", part):
                    self.assertRegex(part, r'^"[^"]+"$', f"{part} in {expression}")

    def test_the_dashboard_shows_what_an_operator_needs(self):
        dashboard = json.loads(substituted(RESOURCES["Dashboard"]["Properties"]["DashboardBody"]))
        shown = json.dumps(dashboard)
        for metric in (
            "ApproximateNumberOfMessagesVisible",
            "ApproximateAgeOfOldestMessage",
            "RunningTaskCount",
            "DesiredTaskCount",
            "pipeline.rows.applied",
            "pipeline.messages.dead_lettered",
            "pipeline.records.quarantined",
            "CPUUtilization",
            "DatabaseConnections",
        ):
            self.assertIn(metric, shown)


class Alarms(unittest.TestCase):
    def test_every_alarm_pages_the_topic_and_says_what_to_do(self):
        pages = {n: a for n, a in of_type("AWS::CloudWatch::Alarm").items() if n != "TransformerMessagesWaitingWithNoTask"}
        self.assertEqual(
            set(pages), {"DeadLettersAlarm", "OldestMessageAlarm", "ErrorsAlarm", "DatabaseStorageAlarm"}
        )
        for name, alarm in pages.items():
            props = alarm["Properties"]
            self.assertEqual(props["AlarmActions"], [{"Ref": "AlarmTopic"}], name)
            self.assertIn("docs/operations.md", substituted(props["AlarmDescription"]), name)
        # The alarms an operator command answers name it.
        for name, command in (("DeadLettersAlarm", "transformer redrive"),
                              ("OldestMessageAlarm", "transformer status"),
                              ("ErrorsAlarm", "transformer status")):
            self.assertIn(command, substituted(pages[name]["Properties"]["AlarmDescription"]), name)

    def test_a_failed_import_run_is_sent_to_the_topic(self):
        rule = RESOURCES["ImportFailedRule"]["Properties"]
        detail = rule["EventPattern"]["detail"]
        self.assertEqual(detail["lastStatus"], ["STOPPED"])
        # No array in the pattern: EventBridge cannot tie a container's exit
        # code to its name. The function reads them (test_import_failed.py).
        self.assertNotIn("containers", detail)
        (target,) = rule["Targets"]
        self.assertEqual(target["Arn"], {"Fn::GetAtt": ["ImportFailed", "Arn"]})
        function = RESOURCES["ImportFailed"]["Properties"]
        self.assertEqual(function["Environment"]["Variables"]["TOPIC_ARN"], {"Ref": "AlarmTopic"})
        self.assertIn("docs/operations.md", function["Code"]["ZipFile"])
        publish = [s for r, s in statements() if r == "ImportFailedRole" and "sns:Publish" in as_list(s["Action"])]
        self.assertEqual([s["Resource"] for s in publish], [{"Ref": "AlarmTopic"}])
        policy = RESOURCES["AlarmTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
        self.assertEqual({s["Principal"]["Service"] for s in policy}, {"cloudwatch.amazonaws.com"})


if __name__ == "__main__":
    unittest.main()
