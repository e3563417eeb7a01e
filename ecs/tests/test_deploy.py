"""ecs/deploy.sh, run with the real aws CLI against moto's server, and
against a stand-in aws CLI for what no emulator produces.

No AWS account is reachable from the machines this project is tested on.
`OnMoto` runs the script as a user does, with the aws CLI from PyPI
against moto (ecs/tests/moto: STS, S3, EC2, ECR, ECS, SSM and a
CloudFormation that creates the stack): every check the CLI makes on the
client, the requests it sends, and how far moto's CloudFormation gets.
Only the image build and push are stubbed (a docker that records its
arguments). `Deploy` answers from a stand-in CLI, in the CLI's documented
output shapes, for the states moto never reaches: a stack in
ROLLBACK_COMPLETE or still changing, a task ECS cannot place or that
fails, an error other than "does not exist". docs/testing.md says what
each holds and what it does not.
"""

import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Answers of the stand-in aws CLI, first match wins: (pattern on the
# joined arguments, exit code, stdout). A scenario puts its own first.
TASK = "arn:aws:ecs:eu-west-1:123456789012:task/pipeline-cluster/0123abcd"
HAPPY = [
    (r"sts get-caller-identity", 0, "123456789012"),
    (r"s3api head-bucket --bucket api-pipeline-deploy-123456789012-eu-west-1 --expected-bucket-owner 123456789012", 0, ""),
    (r"s3api put-object", 0, ""),
    (r"ecr describe-repositories --repository-names api-pipeline/collector", 0, ""),
    (r"cloudformation describe-stacks .*Stacks\[0\]\.StackStatus", 0, "UPDATE_COMPLETE"),
    (r"cloudformation describe-stacks .*ParameterKey=='InstanceType'", 0, "t3.small"),
    (r"cloudformation describe-stacks .*ParameterKey=='TransformerMaxTasks'", 0, "8"),
    (r"cloudformation describe-stacks .*ParameterKey=='MaxInstances'", 0, "9"),
    (r"describe-stacks .*ParameterKey=='SourceUrl'", 0, "https://jsonplaceholder.typicode.com/posts"),
    (r"describe-stacks .*ParameterKey=='ImportResources'", 0, "posts,comments"),
    (r"describe-stacks .*ParameterKey=='CollectorImage'", 0, "public.ecr.aws/aws-observability/aws-otel-collector:v0.49.0"),
    (r"describe-stacks .*ParameterKey=='(ResourcesFile|MigrationsPrefix)'", 0, ""),
    (r"get-template-summary .*ParameterKey=='(ResourcesFile|MigrationsPrefix)'", 0, ""),
    (r"get-template-summary .*ParameterKey=='SourceUrl'", 0, "https://jsonplaceholder.typicode.com/posts"),
    (r"get-template-summary .*ParameterKey=='ImportResources'", 0, "posts,comments"),
    (r"get-template-summary .*ParameterKey=='CollectorImage'", 0, "public.ecr.aws/aws-observability/aws-otel-collector:v0.49.0"),
    (r"cloudformation get-template-summary .*ParameterKey=='InstanceType'", 0, "t3.small"),
    (r"cloudformation get-template-summary .*ParameterKey=='TransformerMaxTasks'", 0, "8"),
    (r"cloudformation get-template-summary .*ParameterKey=='MaxInstances'", 0, "9"),
    (r"OutputKey=='ImporterRepositoryUri'", 0, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/p-importer"),
    (r"OutputKey=='TransformerRepositoryUri'", 0, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/p-transformer"),
    (r"OutputKey=='MigrateTaskDefinition'", 0, "arn:aws:ecs:eu-west-1:123456789012:task-definition/p-migrate:3"),
    (r"OutputKey=='ClusterName'", 0, "pipeline-cluster"),
    (r"OutputKey=='RawBucket'", 0, "p-rawbucket-abc"),
    (r"OutputKey=='TaskSecurityGroup'", 0, "sg-0task"),
    (r"OutputKey=='TransformerLogGroup'", 0, "p-TransformerLogs-XYZ"),
    (r"OutputKey=='QueueUrl'", 0, "https://sqs.eu-west-1.amazonaws.com/123456789012/p-posts"),
    (r"ec2 describe-instance-types", 0, "3\tx86_64"),
    (r"ec2 describe-route-tables", 0, json.dumps([{"DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": "nat-0a"}])),
    (r"ec2 describe-vpc-endpoints", 0, "[]"),
    (r"cloudformation deploy", 0, ""),
    (r"ecr get-login-password", 0, "token"),
    (r"ecr describe-images", 254, "ImageNotFoundException"),
    (r"ecs describe-task-definition", 0, json.dumps({
        "family": "p-migrate", "networkMode": "awsvpc", "cpu": "256", "memory": "256",
        "executionRoleArn": "arn:aws:iam::123456789012:role/exec", "taskRoleArn": "arn:aws:iam::123456789012:role/migrate",
        "requiresCompatibilities": ["EC2"], "containerDefinitions": [{"name": "migrate", "image": "old"}]})),
    (r"ecs register-task-definition", 0, "arn:aws:ecs:eu-west-1:123456789012:task-definition/p-migrate:4"),
    (r"ecs describe-clusters", 0, "p-capacity"),
    (r"ecs run-task", 0, json.dumps({"tasks": [{"taskArn": TASK}], "failures": []})),
    (r"ecs wait tasks-stopped", 0, ""),
    (r"ecs describe-tasks", 0, json.dumps({"tasks": [{"lastStatus": "STOPPED", "stopCode": "EssentialContainerExited",
        "stoppedReason": "Essential container in task exited", "containers": [{"exitCode": 0}]}]})),
    (r"configure get region", 0, "eu-west-1"),
]

FAKE_AWS = textwrap.dedent('''\
    import json, os, re, sys
    args = " ".join(sys.argv[1:])
    with open(os.environ["FAKE_LOG"], "a") as log:
        log.write(json.dumps(["aws"] + sys.argv[1:]) + "\\n")
    for pattern, code, out in json.load(open(os.environ["FAKE_ANSWERS"])):
        if re.search(pattern, args):
            if out:
                print(out)
            sys.exit(code)
    sys.exit("fake aws: no answer for: " + args)
''')
FAKE_TOOL = textwrap.dedent('''\
    import json, os, sys
    with open(os.environ["FAKE_LOG"], "a") as log:
        log.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
    if sys.argv[1:3] == ["rev-parse", "--short=12"]:
        print("0123456789ab")
    if "--password-stdin" in sys.argv:
        sys.stdin.read()
''')


MIGRATION = "2026-12-07-100000_add_tickets"


def write_resources(work):
    """A resources file and a migrations directory, as a user deploys them."""
    resources = work / "resources.toml"
    resources.write_bytes((ROOT / "docs" / "examples" / "tickets.toml").read_bytes())
    migrations = work / "migrations"
    (migrations / MIGRATION).mkdir(parents=True)
    (migrations / MIGRATION / "up.sql").write_text('CREATE TABLE "tickets" ("ticket_id" text PRIMARY KEY);\n')
    (migrations / MIGRATION / "down.sql").write_text('DROP TABLE "tickets";\n')
    return resources, migrations


def digest(data):
    return hashlib.sha256(data).hexdigest()[:16]


class Deploy(unittest.TestCase):
    def deploy(self, *overrides, answers=(), env=None, stack="p", flags=()):
        """Runs deploy.sh with the stand-ins; returns (exit code, stderr, calls)."""
        work = Path(self.enterContext(tempfile.TemporaryDirectory()))
        bin_dir = work / "bin"
        bin_dir.mkdir()
        for name, text in [("aws", FAKE_AWS), ("docker", FAKE_TOOL), ("git", FAKE_TOOL)]:
            # This interpreter itself: a shim on PATH can take 0.2 s a call.
            (bin_dir / name).write_text(f"#!{sys.executable}\n{text}")
            (bin_dir / name).chmod(0o755)
        (work / "answers.json").write_text(json.dumps(list(answers) + HAPPY))
        run = subprocess.run(
            ["bash", str(ROOT / "ecs" / "deploy.sh"), *flags, stack, "vpc-0a", "subnet-a,subnet-b", *overrides],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env={
                "PATH": f"{bin_dir}:{os.environ['PATH']}",
                "FAKE_LOG": str(work / "calls.log"),
                "FAKE_ANSWERS": str(work / "answers.json"),
                **(env or {}),
            },
        )
        log = work / "calls.log"
        calls = [" ".join(json.loads(line)) for line in log.read_text().splitlines()] if log.exists() else []
        return run.returncode, run.stderr, calls

    def assertCalled(self, calls, pattern):
        self.assertTrue(any(re.search(pattern, c) for c in calls), f"no call like {pattern!r} in:\n" + "\n".join(calls))

    def assertNotCalled(self, calls, pattern):
        self.assertFalse(any(re.search(pattern, c) for c in calls), f"a call like {pattern!r}")

    def test_an_update_builds_for_the_instances_architecture_migrates_then_deploys(self):
        code, stderr, calls = self.deploy()
        self.assertEqual(code, 0, stderr)
        self.assertCalled(calls, r"docker buildx build --platform linux/amd64 --target importer -t \S+:0123456789ab-x86_64")
        deploys = [c for c in calls if "cloudformation deploy" in c]
        self.assertEqual(len(deploys), 1, deploys)
        self.assertIn("Architecture=x86_64", deploys[0])
        self.assertIn("ServicesEnabled=true", deploys[0])
        self.assertLess(calls.index(next(c for c in calls if "ecs run-task" in c)), calls.index(deploys[0]))

    def test_the_resources_file_and_migrations_reach_the_migrate_task_then_the_stack(self):
        work = Path(self.enterContext(tempfile.TemporaryDirectory()))
        resources, migrations = write_resources(work)
        code, stderr, calls = self.deploy(flags=["--resources", str(resources), "--migrations", str(migrations)])
        self.assertEqual(code, 0, stderr)
        file_key = f"config/resources/{digest(resources.read_bytes())}.toml"
        self.assertCalled(calls, rf"s3api put-object --bucket p-rawbucket-abc --key {file_key} --body {resources} ")
        self.assertCalled(calls, rf"s3api put-object --bucket p-rawbucket-abc --key config/migrations/[0-9a-f]{{16}}/{MIGRATION}/up.sql ")
        register = next(c for c in calls if "ecs register-task-definition" in c)
        self.assertRegex(register, rf'"name": "RESOURCES_FILE",\s+"value": "s3://p-rawbucket-abc/{file_key}"')
        deploy = next(c for c in calls if "cloudformation deploy" in c)
        self.assertIn(f"ResourcesFile={file_key}", deploy)
        self.assertRegex(deploy, r"MigrationsPrefix=config/migrations/[0-9a-f]{16}/")
        # Uploaded before the migrate task runs, which runs before the update.
        put = calls.index(next(c for c in calls if file_key in c and "put-object" in c))
        self.assertLess(put, calls.index(register))

    def test_a_migrations_directory_without_migrations_is_refused_before_any_call(self):
        work = Path(self.enterContext(tempfile.TemporaryDirectory()))
        code, stderr, calls = self.deploy(flags=["--migrations", str(work)])
        self.assertEqual(code, 1, stderr)
        self.assertIn(f"--migrations {work} holds no migration", stderr)
        self.assertNotCalled(calls, r"^aws ")

    def test_arm64_instances_get_arm64_images_and_ami(self):
        code, stderr, calls = self.deploy(
            "InstanceType=t4g.small", answers=[(r"ec2 describe-instance-types", 0, "3\tarm64")]
        )
        self.assertEqual(code, 0, stderr)
        self.assertCalled(calls, r"ec2 describe-instance-types --instance-types t4g.small")
        self.assertCalled(calls, r"docker buildx build --platform linux/arm64 --target transformer -t \S+:0123456789ab-arm64")
        self.assertCalled(calls, r"cloudformation deploy .*Architecture=arm64")

    def test_a_stack_left_in_rollback_complete_is_explained_deleted_and_created_again(self):
        events = {"StackEvents": [
            {"LogicalResourceId": "p", "ResourceStatus": "ROLLBACK_IN_PROGRESS", "ResourceStatusReason": "x"},
            {"LogicalResourceId": "Database", "ResourceStatus": "CREATE_FAILED",
             "ResourceStatusReason": "Cannot find version 17.99 for postgres"},
        ]}
        code, stderr, calls = self.deploy(answers=[
            (r"Stacks\[0\]\.StackStatus", 0, "ROLLBACK_COMPLETE"),
            (r"describe-stack-events", 0, json.dumps(events)),
            (r"delete-stack|wait stack-delete-complete", 0, ""),
        ])
        self.assertEqual(code, 0, stderr)
        self.assertIn("p is in ROLLBACK_COMPLETE: its creation failed:", stderr)
        self.assertIn("  Database: Cannot find version 17.99 for postgres", stderr)
        delete = calls.index("aws cloudformation delete-stack --stack-name p")
        deploys = [i for i, c in enumerate(calls) if "cloudformation deploy" in c]
        self.assertEqual(len(deploys), 2, "created without services, then with them")
        self.assertLess(delete, deploys[0])
        self.assertIn("ServicesEnabled=false", calls[deploys[0]])
        # A new stack's parameters are the template's defaults.
        self.assertCalled(calls, r"get-template-summary --template-url https://s3.eu-west-1.amazonaws.com/"
                                 r"api-pipeline-deploy-123456789012-eu-west-1/p/[0-9a-f]{16}\.yaml")
        self.assertNotCalled(calls, r"--template-body")

    def test_a_stack_still_changing_is_left_alone(self):
        code, stderr, calls = self.deploy(answers=[(r"Stacks\[0\]\.StackStatus", 0, "UPDATE_IN_PROGRESS")])
        self.assertEqual(code, 1)
        self.assertIn("p is UPDATE_IN_PROGRESS: wait until it has finished", stderr)
        self.assertNotCalled(calls, r"cloudformation deploy|docker")

    def test_a_task_ecs_cannot_place_fails_at_once_with_its_reason(self):
        refused = {"tasks": [], "failures": [{"arn": "arn:aws:ecs:eu-west-1:123456789012:container-instance/c/1",
                                              "reason": "RESOURCE:ENI", "detail": "no free network interface"}]}
        code, stderr, calls = self.deploy(answers=[(r"ecs run-task", 0, json.dumps(refused))])
        self.assertEqual(code, 1)
        self.assertIn("ECS did not start the migrate task: "
                      "arn:aws:ecs:eu-west-1:123456789012:container-instance/c/1: RESOURCE:ENI (no free network interface)",
                      stderr)
        self.assertNotCalled(calls, r"ecs wait tasks-stopped")
        self.assertNotCalled(calls, r"cloudformation deploy")

    def test_a_failed_migration_prints_why_the_task_stopped_and_where_its_log_is(self):
        stopped = {"tasks": [{"lastStatus": "STOPPED", "stopCode": "EssentialContainerExited",
                              "stoppedReason": "Essential container in task exited",
                              "containers": [{"exitCode": 1, "reason": None}]}]}
        code, stderr, calls = self.deploy(answers=[(r"ecs describe-tasks", 0, json.dumps(stopped))])
        self.assertEqual(code, 1)
        self.assertIn("  stopped: Essential container in task exited (EssentialContainerExited)", stderr)
        self.assertIn("  container: exit code 1, no reason given", stderr)
        self.assertIn(f"the migrate task {TASK} failed; its log: group p-TransformerLogs-XYZ, stream migrate/migrate/0123abcd",
                      stderr)
        self.assertNotCalled(calls, r"cloudformation deploy")

    def test_a_task_that_never_started_says_so(self):
        stopped = {"tasks": [{"lastStatus": "STOPPED", "stopCode": "TaskFailedToStart",
                              "stoppedReason": "CannotPullContainerError: pull access denied",
                              "containers": [{"reason": "CannotPullContainerError"}]}]}
        code, stderr, _ = self.deploy(answers=[(r"ecs describe-tasks", 0, json.dumps(stopped))])
        self.assertEqual(code, 1)
        self.assertIn("  stopped: CannotPullContainerError: pull access denied (TaskFailedToStart)", stderr)
        self.assertIn("  container: exit code none, CannotPullContainerError", stderr)

    def test_too_few_instances_for_a_deployment_at_full_scale_is_refused_with_the_number_needed(self):
        code, stderr, calls = self.deploy("MaxInstances=4")
        self.assertEqual(code, 1)
        self.assertIn("MaxInstances=4 x 2 tasks per t3.small = 8 tasks, but a deployment at "
                      "TransformerMaxTasks=8 needs 17 (8 x 2 + 1 importer): pass MaxInstances=9", stderr)
        self.assertNotCalled(calls, r"cloudformation deploy|docker buildx")

    def test_subnets_without_nat_need_every_endpoint(self):
        public = [(r"ec2 describe-route-tables", 0,
                   json.dumps([{"DestinationCidrBlock": "0.0.0.0/0", "GatewayId": "igw-0a"}]))]
        code, stderr, calls = self.deploy(answers=public + [
            (r"ec2 describe-vpc-endpoints", 0, json.dumps(["com.amazonaws.eu-west-1.s3", "com.amazonaws.eu-west-1.sqs"]))])
        self.assertEqual(code, 1)
        self.assertIn("subnet-a (a public subnet: tasks get no public address, so no way out)", stderr)
        missing = re.search(r"which vpc-0a lacks: (.*) \(docs/aws.md", stderr).group(1).split()
        self.assertIn("com.amazonaws.eu-west-1.ecs-agent", missing)
        self.assertIn("com.amazonaws.eu-west-1.ecs-telemetry", missing)
        self.assertNotIn("com.amazonaws.eu-west-1.sqs", missing)
        self.assertNotCalled(calls, r"cloudformation deploy")

        every = json.dumps([f"com.amazonaws.eu-west-1.{s}" for s in
                            "ecr.api ecr.dkr ecs ecs-agent ecs-telemetry logs s3 sqs secretsmanager ssm xray".split()])
        endpoints = [(r"ec2 describe-vpc-endpoints", 0, every)]
        code, stderr, _ = self.deploy(answers=public + endpoints)
        self.assertEqual(code, 1)
        self.assertIn("run again with DEPLOY_WITHOUT_NAT=1", stderr)
        code, stderr, _ = self.deploy(answers=public + endpoints, env={"DEPLOY_WITHOUT_NAT": "1"})
        self.assertEqual(code, 0, stderr)

    def test_an_error_reading_the_stack_is_not_taken_for_no_stack(self):
        expired = "An error occurred (ExpiredToken) when calling the DescribeStacks operation: The security token included in the request is expired"
        code, stderr, calls = self.deploy(answers=[(r"Stacks\[0\]\.StackStatus", 254, expired)])
        self.assertEqual(code, 1)
        self.assertIn(f"cannot read the stack p: {expired}", stderr)
        self.assertNotCalled(calls, r"cloudformation deploy|docker")

    def test_stack_names_ecs_refuses_in_the_capacity_providers_name_are_refused_first(self):
        for name in ("ecs-pipeline", "AWSPipeline", "fargate1"):
            code, stderr, calls = self.deploy(stack=name)
            self.assertEqual(code, 1, stderr)
            self.assertIn(f"the stack name {name} starts with aws, ecs or fargate", stderr)
            self.assertEqual(calls, [], "refused before any call")

    def test_the_sources_port_is_let_out_and_two_ports_are_refused(self):
        code, stderr, calls = self.deploy("SourceUrl=http://api.internal:8080/posts")
        self.assertEqual(code, 0, stderr)
        self.assertCalled(calls, r"cloudformation deploy .*SourcePort=8080 ")
        code, stderr, calls = self.deploy("SourceUrl=http://api.internal/posts")
        self.assertCalled(calls, r"cloudformation deploy .*SourcePort=80 ")
        code, stderr, calls = self.deploy()
        self.assertCalled(calls, r"cloudformation deploy .*SourcePort=443 ")
        code, stderr, calls = self.deploy("SourceUrl=http://a:8080/posts", "ImportResources=posts,users=https://b:9443/users")
        self.assertEqual(code, 1)
        self.assertIn("the importer's sources listen on ports 8080 9443", stderr)
        self.assertNotCalled(calls, r"cloudformation deploy")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MOTO_VENV = os.environ.get("MOTO_VENV")


def start_moto(test, work, recording=None):
    """Starts moto's server (ecs/tests/moto) on a free port for one test;
    returns the environment that points the aws CLI at it."""
    port = free_port()
    # Over TLS, as AWS is.
    tls = work / "tls"
    tls.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", tls / "key.pem", "-out", tls / "cert.pem"], check=True, capture_output=True)
    env = {**os.environ}
    if recording:
        env.update(MOTO_ENABLE_RECORDING="True", MOTO_RECORDER_FILEPATH=str(recording))
    log = test.enterContext((work / "moto.log").open("w"))
    server = subprocess.Popen(
        [f"{MOTO_VENV}/bin/python", str(ROOT / "ecs" / "tests" / "moto" / "launch.py"), "-H", "127.0.0.1", "-p", str(port),
         "-c", tls / "cert.pem", "-k", tls / "key.pem"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    test.addCleanup(server.wait)
    test.addCleanup(server.terminate)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            test.assertIsNone(server.poll(), (work / "moto.log").read_text())
            test.assertLess(time.monotonic(), deadline, "moto did not start")
            time.sleep(0.1)
    # localhost, not 127.0.0.1: moto finds a TemplateURL's bucket in its
    # path only when the host is "localhost" (moto cloudformation/utils.py).
    return {
        "PATH": f"{work / 'bin'}:{MOTO_VENV}/bin:/usr/bin:/bin",
        "HOME": str(work),
        "AWS_ENDPOINT_URL": f"https://localhost:{port}", "AWS_CA_BUNDLE": str(tls / "cert.pem"),
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1", "AWS_PAGER": "",
        # moto answers 500 where it has no model (RunTask without a container
        # instance): no retries, which only slow the test down.
        "AWS_MAX_ATTEMPTS": "1",
    }


@unittest.skipUnless(MOTO_VENV, "MOTO_VENV is set by scripts/check-config")
class OnMoto(unittest.TestCase):
    """deploy.sh with the real aws CLI against moto's server."""

    REGION = "eu-west-1"

    def setUp(self):
        work = Path(self.enterContext(tempfile.TemporaryDirectory()))
        self.work = work
        self.recording = work / "requests.jsonl"
        self.env = {**start_moto(self, work, self.recording), "DOCKER_LOG": str(work / "docker.log")}
        # Only the image build and push are stubbed.
        (work / "bin").mkdir()
        docker = work / "bin" / "docker"
        docker.write_text(f"#!{sys.executable}\n" + textwrap.dedent('''\
            import json, os, sys
            with open(os.environ["DOCKER_LOG"], "a") as log:
                log.write(json.dumps(sys.argv[1:]) + "\\n")
            if "--password-stdin" in sys.argv:
                sys.stdin.read()
        '''))
        docker.chmod(0o755)
        # A clean checkout: the script refuses a dirty work tree.
        self.repo = work / "repo"
        (self.repo / "ecs").mkdir(parents=True)
        for name in ("deploy.sh", "pipeline.yaml"):
            (self.repo / "ecs" / name).write_bytes((ROOT / "ecs" / name).read_bytes())
        for args in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
            subprocess.run(["git", *args], cwd=self.repo, check=True)

    def aws(self, *args):
        run = subprocess.run(["aws", *args, "--output", "json"], env=self.env, capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        return json.loads(run.stdout) if run.stdout.strip() else None

    def network(self, nat=True):
        """The default VPC, two subnets and, with nat, their route through a NAT gateway."""
        vpc = self.aws("ec2", "describe-vpcs")["Vpcs"][0]["VpcId"]
        subnets = [s["SubnetId"] for s in self.aws("ec2", "describe-subnets")["Subnets"]]
        if nat:
            eip = self.aws("ec2", "allocate-address")["AllocationId"]
            gateway = self.aws("ec2", "create-nat-gateway", "--subnet-id", subnets[2],
                               "--allocation-id", eip)["NatGateway"]["NatGatewayId"]
            table = self.aws("ec2", "create-route-table", "--vpc-id", vpc)["RouteTable"]["RouteTableId"]
            self.aws("ec2", "create-route", "--route-table-id", table, "--destination-cidr-block", "0.0.0.0/0",
                     "--nat-gateway-id", gateway)
            for subnet in subnets[:2]:
                self.aws("ec2", "associate-route-table", "--route-table-id", table, "--subnet-id", subnet)
        return vpc, ",".join(subnets[:2])

    def deploy(self, vpc, subnets, *overrides, env=None, flags=()):
        run = subprocess.run(["bash", "ecs/deploy.sh", *flags, "p", vpc, subnets, *overrides], cwd=self.repo,
                             env={**self.env, **(env or {})}, capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=600)
        return run.returncode, run.stderr

    def cloudformation_requests(self):
        """(action, parameters) of every CloudFormation request moto received."""
        requests = []
        for line in self.recording.read_text().splitlines():
            entry = json.loads(line)
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                body = base64.b64decode(body).decode("utf-8", "replace")
            fields = urllib.parse.parse_qs(body)
            if fields.get("Version") == ["2010-05-15"]:  # CloudFormation's query API
                requests.append((fields["Action"][0], {k: v[0] for k, v in fields.items()}))
        return requests

    def test_a_first_deploy_hands_the_template_over_by_url_and_gets_as_far_as_moto_can_go(self):
        self.assertGreater((ROOT / "ecs" / "pipeline.yaml").stat().st_size, 51_200,
                           "the template is small enough to go inline: this test then proves less")
        vpc, subnets = self.network()
        code, stderr = self.deploy(vpc, subnets)
        print(f"\n--- deploy.sh against moto, exit {code}:\n{stderr[-3000:]}", file=sys.stderr)

        # Nothing sent the template inline: AWS refuses a TemplateBody over
        # 51,200 bytes, and the CLI's deploy refuses such a file without
        # --s3-bucket before any call (DeployBucketRequiredError).
        requests = self.cloudformation_requests()
        self.assertNotIn("DeployBucketRequiredError", stderr)
        self.assertNotIn("--s3-bucket parameter", stderr)
        for action, fields in requests:
            self.assertFalse("TemplateBody" in fields, f"{action} sent the template inline")
        by_url = [(a, f["TemplateURL"]) for a, f in requests if "TemplateURL" in f]
        bucket = f"api-pipeline-deploy-123456789012-{self.REGION}"
        self.assertEqual({a for a, _ in by_url}, {"GetTemplateSummary", "CreateChangeSet"}, requests)
        for _, url in by_url:
            self.assertTrue(url.startswith(f"{self.env['AWS_ENDPOINT_URL']}/{bucket}/p/"), url)

        # The deploy bucket: encrypted, closed to the public, old templates expire.
        rules = self.aws("s3api", "get-bucket-encryption", "--bucket", bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        self.assertEqual(rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"], "AES256")
        block = self.aws("s3api", "get-public-access-block", "--bucket", bucket)["PublicAccessBlockConfiguration"]
        self.assertEqual(set(block.values()), {True})
        lifecycle = self.aws("s3api", "get-bucket-lifecycle-configuration", "--bucket", bucket)["Rules"]
        self.assertEqual(lifecycle[0]["Expiration"], {"Days": 30})

        # How far it gets on moto: moto's CloudFormation creates the stack
        # without services (skipping what it does not model: the capacity
        # provider and its association, the bucket policy, the egress rule,
        # the scaling policies and alarms); the images are built and the
        # collector copied; the migrate task definition is registered with
        # the new image; the CLI accepts the run-task call and sends it, and
        # moto fails it (500: its cluster has no capacity provider). AWS's
        # answer to run-task, and the update that follows, are covered by
        # `Deploy` below and argued in docs/aws.md.
        stack = self.aws("cloudformation", "describe-stacks", "--stack-name", "p")["Stacks"][0]
        self.assertEqual(stack["StackStatus"], "CREATE_COMPLETE")
        parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
        self.assertEqual((parameters["ServicesEnabled"], parameters["SourcePort"]), ("false", "443"))
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        docker = [json.loads(line) for line in Path(self.env["DOCKER_LOG"]).read_text().splitlines()]
        builds = [c for c in docker if c[:2] == ["buildx", "build"]]
        self.assertEqual([c[c.index("--target") + 1] for c in builds], ["importer", "transformer"], docker)
        self.assertIn(["buildx", "imagetools", "create", "--tag",
                       f"123456789012.dkr.ecr.{self.REGION}.amazonaws.com/api-pipeline/collector:v0.49.0",
                       "public.ecr.aws/aws-observability/aws-otel-collector:v0.49.0"], docker)
        self.aws("ecr", "describe-repositories", "--repository-names", "api-pipeline/collector")
        family = outputs["MigrateTaskDefinition"].split("/")[-1].split(":")[0]
        migrate = self.aws("ecs", "describe-task-definition", "--task-definition", family)["taskDefinition"]
        self.assertEqual(migrate["revision"], 2, "a new revision, registered by the script")
        tag = builds[1][builds[1].index("-t") + 1].split(":")[-1]
        self.assertEqual(migrate["containerDefinitions"][0]["image"], f"{outputs['TransformerRepositoryUri']}:{tag}")
        run_task = [json.loads(base64.b64decode(e["body"]) if e.get("body_encoded") else e["body"])
                    for e in map(json.loads, self.recording.read_text().splitlines())
                    if e.get("headers", {}).get("X-Amz-Target", "").endswith(".RunTask")]
        self.assertTrue(run_task, "the CLI sent run-task")
        self.assertEqual(run_task[0]["networkConfiguration"]["awsvpcConfiguration"]["subnets"], subnets.split(","))
        self.assertIn("An error occurred (500) when calling the RunTask operation", stderr,
                      "moto 5.2.6 cannot run the task; if it now can, extend this test")
        self.assertNotEqual(code, 0)

    def test_the_resources_file_and_migrations_go_to_the_stacks_bucket_and_the_migrate_task_reads_them(self):
        resources, migrations = write_resources(self.work)
        vpc, subnets = self.network()
        code, stderr = self.deploy(vpc, subnets, flags=["--resources", str(resources), "--migrations", str(migrations)])
        # As far as moto goes: the migrate task is sent, and moto fails it.
        self.assertIn("An error occurred (500) when calling the RunTask operation", stderr)
        self.assertNotEqual(code, 0)

        stack = self.aws("cloudformation", "describe-stacks", "--stack-name", "p")["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        bucket = outputs["RawBucket"]
        listed = self.aws("s3api", "list-objects-v2", "--bucket", bucket, "--prefix", "config/")["Contents"]
        keys = sorted(o["Key"] for o in listed)
        file_key = f"config/resources/{digest(resources.read_bytes())}.toml"
        prefix = keys[0].rsplit("/", 2)[0] + "/"
        self.assertRegex(prefix, r"^config/migrations/[0-9a-f]{16}/$")
        self.assertEqual(keys, [f"{prefix}{MIGRATION}/down.sql", f"{prefix}{MIGRATION}/up.sql", file_key])
        for key, local in [(file_key, resources), (f"{prefix}{MIGRATION}/up.sql", migrations / MIGRATION / "up.sql")]:
            self.aws("s3api", "get-object", "--bucket", bucket, "--key", key, str(self.work / "got"))
            self.assertEqual((self.work / "got").read_bytes(), local.read_bytes(), key)

        # The migrate task that runs before the services reads them, and
        # has a /tmp to copy the migrations to.
        family = outputs["MigrateTaskDefinition"].split("/")[-1].split(":")[0]
        migrate = self.aws("ecs", "describe-task-definition", "--task-definition", family)["taskDefinition"]
        self.assertEqual(migrate["revision"], 2)
        container = migrate["containerDefinitions"][0]
        env = {e["name"]: e["value"] for e in container["environment"]}
        self.assertEqual(env["RESOURCES_FILE"], f"s3://{bucket}/{file_key}")
        self.assertEqual(env["MIGRATIONS_DIR"], f"s3://{bucket}/{prefix}")
        self.assertEqual([m["containerPath"] for m in container["mountPoints"]], ["/tmp"])
        self.assertTrue(container["readonlyRootFilesystem"])

    def test_without_nat_every_endpoint_is_named_whole(self):
        vpc, subnets = self.network(nat=False)
        table = self.aws("ec2", "describe-route-tables")["RouteTables"][0]["RouteTableId"]
        for service in "ecr.api ecr.dkr ecs-agent ecs-telemetry logs s3 sqs secretsmanager ssm xray".split():
            self.aws("ec2", "create-vpc-endpoint", "--vpc-id", vpc, "--service-name", f"com.amazonaws.{self.REGION}.{service}",
                     "--route-table-ids", table)
        code, stderr = self.deploy(vpc, subnets)
        self.assertEqual(code, 1, stderr)
        # ecs-agent is there, ecs is not: a word match took one for the other.
        self.assertIn(f"which {vpc} lacks: com.amazonaws.{self.REGION}.ecs (docs/aws.md", stderr)
        self.aws("ec2", "create-vpc-endpoint", "--vpc-id", vpc, "--service-name", f"com.amazonaws.{self.REGION}.ecs",
                 "--route-table-ids", table)
        code, stderr = self.deploy(vpc, subnets)
        self.assertEqual(code, 1, stderr)
        self.assertIn("run again with DEPLOY_WITHOUT_NAT=1", stderr)

    def test_too_few_instances_are_refused_with_the_instance_types_real_interfaces(self):
        vpc, subnets = self.network()
        code, stderr = self.deploy(vpc, subnets, "InstanceType=t4g.small", "MaxInstances=4")
        self.assertEqual(code, 1, stderr)
        self.assertIn("MaxInstances=4 x 2 tasks per t4g.small = 8 tasks", stderr)
        self.assertEqual({a for a, _ in self.cloudformation_requests()}, {"DescribeStacks", "GetTemplateSummary"},
                         "nothing deployed")


if __name__ == "__main__":
    unittest.main()
