"""ecs/deploy.sh's own decisions, run against a stand-in aws CLI.

No AWS account is reachable from the machines this project is tested on,
so these tests cannot show what AWS does. They show what the script does
with AWS's answers: the answers are written after the CLI's documented
output shapes, and each test checks the calls the script makes and the
line it prints. What AWS does with the calls is argued in docs/aws.md.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Answers of the stand-in aws CLI, first match wins: (pattern on the
# joined arguments, exit code, stdout). A scenario puts its own first.
TASK = "arn:aws:ecs:eu-west-1:123456789012:task/pipeline-cluster/0123abcd"
HAPPY = [
    (r"cloudformation describe-stacks .*Stacks\[0\]\.StackStatus", 0, "UPDATE_COMPLETE"),
    (r"cloudformation describe-stacks .*ParameterKey=='InstanceType'", 0, "t3.small"),
    (r"cloudformation describe-stacks .*ParameterKey=='TransformerMaxTasks'", 0, "8"),
    (r"cloudformation describe-stacks .*ParameterKey=='MaxInstances'", 0, "9"),
    (r"cloudformation get-template-summary .*ParameterKey=='InstanceType'", 0, "t3.small"),
    (r"cloudformation get-template-summary .*ParameterKey=='TransformerMaxTasks'", 0, "8"),
    (r"cloudformation get-template-summary .*ParameterKey=='MaxInstances'", 0, "9"),
    (r"OutputKey=='ImporterRepositoryUri'", 0, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/p-importer"),
    (r"OutputKey=='TransformerRepositoryUri'", 0, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/p-transformer"),
    (r"OutputKey=='MigrateTaskDefinition'", 0, "arn:aws:ecs:eu-west-1:123456789012:task-definition/p-migrate:3"),
    (r"OutputKey=='ClusterName'", 0, "pipeline-cluster"),
    (r"OutputKey=='TaskSecurityGroup'", 0, "sg-0task"),
    (r"OutputKey=='TransformerLogGroup'", 0, "p-TransformerLogs-XYZ"),
    (r"OutputKey=='QueueUrl'", 0, "https://sqs.eu-west-1.amazonaws.com/123456789012/p-posts"),
    (r"ec2 describe-instance-types", 0, "3\tx86_64"),
    (r"ec2 describe-route-tables", 0, json.dumps([{"DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": "nat-0a"}])),
    (r"ec2 describe-vpc-endpoints", 0, ""),
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


class Deploy(unittest.TestCase):
    def deploy(self, *overrides, answers=(), env=None):
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
            ["bash", str(ROOT / "ecs" / "deploy.sh"), "p", "vpc-0a", "subnet-a,subnet-b", *overrides],
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
        calls = [" ".join(json.loads(line)) for line in (work / "calls.log").read_text().splitlines()]
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
        self.assertCalled(calls, r"get-template-summary --template-body file://ecs/pipeline.yaml")

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
            (r"ec2 describe-vpc-endpoints", 0, "com.amazonaws.eu-west-1.s3\tcom.amazonaws.eu-west-1.sqs")])
        self.assertEqual(code, 1)
        self.assertIn("subnet-a (a public subnet: tasks get no public address, so no way out)", stderr)
        missing = re.search(r"which vpc-0a lacks: (.*) \(docs/aws.md", stderr).group(1).split()
        self.assertIn("com.amazonaws.eu-west-1.ecs-agent", missing)
        self.assertIn("com.amazonaws.eu-west-1.ecs-telemetry", missing)
        self.assertNotIn("com.amazonaws.eu-west-1.sqs", missing)
        self.assertNotCalled(calls, r"cloudformation deploy")

        every = "\t".join(f"com.amazonaws.eu-west-1.{s}" for s in
                          "ecr.api ecr.dkr ecs ecs-agent ecs-telemetry logs s3 sqs secretsmanager ssm xray".split())
        endpoints = [(r"ec2 describe-vpc-endpoints", 0, every)]
        code, stderr, _ = self.deploy(answers=public + endpoints)
        self.assertEqual(code, 1)
        self.assertIn("run again with DEPLOY_WITHOUT_NAT=1", stderr)
        code, stderr, _ = self.deploy(answers=public + endpoints, env={"DEPLOY_WITHOUT_NAT": "1"})
        self.assertEqual(code, 0, stderr)


if __name__ == "__main__":
    unittest.main()
