"""The failed-import page: the rule's pattern, tested with `aws events
test-event-pattern` on LocalStack (whose matching of arrays is
EventBridge's) and on moto (whose is not), and the function behind it, run
on ECS Task State Change events against moto's SNS (a queue subscribed to
the topic shows what was published). Run by scripts/check-config."""

import json
import os
import subprocess
import tempfile
import time
import unittest
import urllib.request
from pathlib import Path

from cfnlint.decode import decode

from test_deploy import MOTO_VENV, ROOT, free_port, start_moto

TEMPLATE, _ = decode(str(ROOT / "ecs" / "pipeline.yaml"))
FUNCTION = TEMPLATE["Resources"]["ImportFailed"]["Properties"]
CLUSTER = "arn:aws:ecs:eu-west-1:123456789012:cluster/p-Cluster-1"


def event(*containers, stop_code="EssentialContainerExited", reason="Essential container in task exited"):
    """An ECS Task State Change event of the importer's family, after the
    sample in the ECS Developer Guide ("Amazon ECS task state change events")."""
    return {
        "version": "0", "id": "3317b2af-7005-947d-b652-f55e762e571a", "detail-type": "ECS Task State Change",
        "source": "aws.ecs", "account": "123456789012", "time": "2026-12-07T00:00:00Z", "region": "eu-west-1",
        "resources": ["arn:aws:ecs:eu-west-1:123456789012:task/p-Cluster-1/0123abcd"],
        "detail": {
            "clusterArn": CLUSTER, "group": "family:p-importer", "lastStatus": "STOPPED", "desiredStatus": "STOPPED",
            "stopCode": stop_code, "stoppedReason": reason,
            "taskArn": "arn:aws:ecs:eu-west-1:123456789012:task/p-Cluster-1/0123abcd",
            "containers": [dict(c) for c in containers],
        },
    }


IMPORTER_0_COLLECTOR_1 = event({"name": "importer", "exitCode": 0, "lastStatus": "STOPPED"},
                               {"name": "collector", "exitCode": 1, "lastStatus": "STOPPED"})
IMPORTER_1 = event({"name": "importer", "exitCode": 1, "lastStatus": "STOPPED"},
                   {"name": "collector", "exitCode": 0, "lastStatus": "STOPPED"})
NEVER_RAN = event({"name": "importer", "lastStatus": "STOPPED", "reason": "CannotPullContainerError"},
                  {"name": "collector", "lastStatus": "STOPPED"},
                  stop_code="TaskFailedToStart", reason="CannotPullContainerError: pull access denied")


def resolved(pattern):
    """The rule's pattern with its two references as CloudFormation makes them."""
    text = json.dumps(pattern)
    text = text.replace(json.dumps({"Fn::GetAtt": ["Cluster", "Arn"]}), json.dumps(CLUSTER))
    text = text.replace(json.dumps({"Fn::Sub": "family:${AWS::StackName}-importer"}), json.dumps("family:p-importer"))
    return text


@unittest.skipUnless(MOTO_VENV, "MOTO_VENV is set by scripts/check-config")
class ImportFailed(unittest.TestCase):
    def setUp(self):
        work = Path(self.enterContext(tempfile.TemporaryDirectory()))
        self.env = start_moto(self, work)

    def aws(self, *args):
        run = subprocess.run(["aws", *args, "--output", "json", "--endpoint-url", self.env["AWS_ENDPOINT_URL"]],
                             env=self.env, capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        return json.loads(run.stdout) if run.stdout.strip() else None

    def matches(self, pattern, sample):
        return self.aws("events", "test-event-pattern", "--event-pattern", pattern, "--event", json.dumps(sample))["Result"]

    def test_moto_does_not_look_into_arrays_of_objects_as_eventbridge_does(self):
        # EventBridge matches each field of an array of objects on its own
        # (a field matches when any element has the value), so the pattern
        # this stack had, on containers' name and exit code, paged for a
        # collector that exited 1 beside an importer that exited 0. moto
        # 5.2.6 matches nothing inside an array of objects, not even one
        # field: its answer on such a pattern proves nothing either way,
        # which is why the pattern is tested on LocalStack (OnLocalStack).
        for pattern in ({"detail": {"containers": {"name": ["collector"]}}},
                        {"detail": {"containers": {"name": ["importer"], "exitCode": [{"anything-but": 0}]}}}):
            self.assertFalse(self.matches(json.dumps(pattern), IMPORTER_0_COLLECTOR_1),
                             "moto now looks into arrays of objects: compare it with EventBridge's documented matching")

    def test_the_function_pages_for_the_importer_only(self):
        topic = self.aws("sns", "create-topic", "--name", "alarms")["TopicArn"]
        queue = self.aws("sqs", "create-queue", "--queue-name", "pages")["QueueUrl"]
        queue_arn = self.aws("sqs", "get-queue-attributes", "--queue-url", queue, "--attribute-names", "QueueArn")[
            "Attributes"]["QueueArn"]
        self.aws("sns", "subscribe", "--topic-arn", topic, "--protocol", "sqs", "--notification-endpoint", queue_arn,
                 "--attributes", "RawMessageDelivery=true")

        # The function's own code, from the template, run here with boto3
        # (from moto's environment) against moto's SNS.
        code = FUNCTION["Code"]["ZipFile"]
        self.assertLessEqual(len(code), 4096, "Lambda takes at most 4 KiB of inline code")
        path = Path(self.enterContext(tempfile.TemporaryDirectory())) / "index.py"
        path.write_text(code)
        script = (
            "import importlib.util, json, sys\n"
            "spec = importlib.util.spec_from_file_location('index', sys.argv[1])\n"
            "index = importlib.util.module_from_spec(spec); spec.loader.exec_module(index)\n"
            "print(json.dumps(index.handler(json.loads(sys.stdin.read()), None)))\n"
        )
        env = {**self.env, "TOPIC_ARN": topic, "STACK": "p", "LOG_GROUP": "p-ImporterLogs-1"}

        def handle(sample):
            run = subprocess.run([f"{MOTO_VENV}/bin/python", "-c", script, str(path)], input=json.dumps(sample),
                                 env=env, capture_output=True, text=True)
            self.assertEqual(run.returncode, 0, run.stderr)
            return json.loads(run.stdout.splitlines()[-1])

        self.assertIsNone(handle(IMPORTER_0_COLLECTOR_1), "a collector's exit code is not a failed import")
        self.assertIn("the importer exited with code 1", handle(IMPORTER_1))
        self.assertIn("the importer never ran (TaskFailedToStart: CannotPullContainerError", handle(NEVER_RAN))
        pages = self.aws("sqs", "receive-message", "--queue-url", queue, "--max-number-of-messages", "10",
                         "--wait-time-seconds", "1")["Messages"]
        bodies = sorted(m["Body"] for m in pages)
        self.assertEqual(len(bodies), 2, bodies)
        self.assertIn("task arn:aws:ecs:eu-west-1:123456789012:task/p-Cluster-1/0123abcd: the importer exited with code 1",
                      bodies[0])
        self.assertIn("the importer never ran", bodies[1])
        self.assertIn("log group p-ImporterLogs-1", bodies[0])


LOCALSTACK_VENV = os.environ.get("LOCALSTACK_VENV")


@unittest.skipUnless(LOCALSTACK_VENV, "LOCALSTACK_VENV is set by scripts/check-config")
class OnLocalStack(unittest.TestCase):
    """The pattern against LocalStack's EventBridge, which matches each
    field of an array of objects on its own, as EventBridge documents."""

    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.TemporaryDirectory()
        work = Path(cls.work.name)
        (work / "s3").mkdir()
        (work / "fs").mkdir()
        port = free_port()
        env = {**os.environ, "SERVICES": "events", "DISABLE_EVENTS": "1", "SKIP_SSL_CERT_DOWNLOAD": "1",
               "DNS_ADDRESS": "0", "OVERRIDE_IN_DOCKER": "0", "FILESYSTEM_ROOT": str(work / "fs"),
               "LOCALSTACK_S3_DIR": str(work / "s3"), "GATEWAY_LISTEN": f"127.0.0.1:{port}",
               "LOCALSTACK_HOST": f"127.0.0.1:{port}", "LOCALSTACK_BIND_HOST": "127.0.0.1"}
        cls.log = (work / "localstack.log").open("w")
        cls.server = subprocess.Popen([f"{LOCALSTACK_VENV}/bin/python", str(ROOT / "localstack" / "host" / "launch.py")],
                                      cwd=work, env=env, stdout=cls.log, stderr=subprocess.STDOUT)
        cls.endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{cls.endpoint}/_localstack/health", timeout=2)
                break
            except OSError:
                if cls.server.poll() is not None or time.monotonic() > deadline:
                    cls.tearDownClass()
                    raise RuntimeError("LocalStack did not start: " + (work / "localstack.log").read_text()[-2000:])
                time.sleep(0.5)

    @classmethod
    def tearDownClass(cls):
        cls.server.terminate()
        cls.server.wait()
        cls.log.close()
        cls.work.cleanup()

    def matches(self, pattern, sample):
        run = subprocess.run(
            [f"{LOCALSTACK_VENV}/bin/aws", "events", "test-event-pattern", "--endpoint-url", self.endpoint,
             "--event-pattern", pattern, "--event", json.dumps(sample), "--output", "json"],
            env={**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "eu-west-1"},
            capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        return json.loads(run.stdout)["Result"]

    def test_a_pattern_on_the_containers_pages_for_the_collector(self):
        # The pattern this stack had: the importer exited 0, the collector 1,
        # and it matches; which is why the function decides.
        by_fields = json.dumps({"detail": {"containers": {"name": ["importer"], "exitCode": [{"anything-but": 0}]}}})
        self.assertTrue(self.matches(by_fields, IMPORTER_0_COLLECTOR_1))
        self.assertFalse(self.matches(json.dumps({"detail": {"containers": {"name": ["nobody"]}}}), IMPORTER_0_COLLECTOR_1))

    def test_the_rule_hands_every_stopped_importer_task_to_the_function_and_nothing_else(self):
        pattern = resolved(TEMPLATE["Resources"]["ImportFailedRule"]["Properties"]["EventPattern"])
        for sample in (IMPORTER_0_COLLECTOR_1, IMPORTER_1, NEVER_RAN):
            self.assertTrue(self.matches(pattern, sample), sample["detail"]["containers"])
        running = json.loads(json.dumps(IMPORTER_1))
        running["detail"]["lastStatus"] = "RUNNING"
        self.assertFalse(self.matches(pattern, running))
        transformer = json.loads(json.dumps(IMPORTER_1))
        transformer["detail"]["group"] = "service:p-TransformerService"
        self.assertFalse(self.matches(pattern, transformer))


if __name__ == "__main__":
    unittest.main()
