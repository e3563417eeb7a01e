"""Runs moto's server (5.2.6) for ecs/tests, with five of its CloudFormation
bugs mended so that it can create ecs/pipeline.yaml's stack as AWS does,
and EventBridge's TestEventPattern answered.

Each mend makes moto answer as CloudFormation's documentation says, and
nothing else; none of them makes a request pass that AWS would refuse:

1. `Ref` of an `AWS::RDS::DBParameterGroup` is its name (CloudFormation
   User Guide, AWS::RDS::DBParameterGroup, "Return values"); moto hands the
   Python object to the DB instance and fails with an AttributeError.
2. A name CloudFormation makes up for an `AWS::ECR::Repository` is lower
   case, as ECR requires; moto keeps the logical id's capitals, which its
   own ECR then refuses.
3. `Fn::GetAtt` splits `Resource.Attribute.Path` at the first dot only
   (User Guide, Fn::GetAtt): `Database.Endpoint.Address`; moto splits at
   every dot in `${...}` of `Fn::Sub`.
4. `AWS::RDS::DBInstance` with `ManageMasterUserPassword` has the attribute
   `MasterUserSecret.SecretArn` (User Guide, AWS::RDS::DBInstance); moto
   neither passes the property on nor knows the attribute.
5. A stack created from a change set has its template's outputs; moto keeps
   the outputs of the empty stack the change set started from.
6. TestEventPattern answers with moto's own matcher, the one it routes
   PutEvents with (moto events/models.py, EventPattern); moto 5.2.6 answers
   that call with an empty body.

Usage: python launch.py -H 127.0.0.1 -p PORT (moto_server's arguments).
"""

import json
import sys

import moto.cloudformation.parsing as parsing
from moto.cloudformation.models import ChangeSet
from moto.rds.models import DBInstance, DBParameterGroup, rds_backends

# 1.
DBParameterGroup.physical_resource_id = property(lambda self: self.name)

# 2.
_generate_resource_name = parsing.generate_resource_name


def generate_resource_name(resource_type, stack_name, logical_id):
    name = _generate_resource_name(resource_type, stack_name, logical_id)
    return name.lower() if resource_type == "AWS::ECR::Repository" else name


parsing.generate_resource_name = generate_resource_name

# 3. clean_json calls itself through the module, so this covers every
# nested use, Fn::Sub's `${A.B.C}` included.
_clean_json = parsing.clean_json


def clean_json(resource_json, resources_map):
    if isinstance(resource_json, dict):
        get_att = resource_json.get("Fn::GetAtt")
        if isinstance(get_att, list) and len(get_att) > 2:
            resource_json = {"Fn::GetAtt": [get_att[0], ".".join(get_att[1:])]}
    return _clean_json(resource_json, resources_map)


parsing.clean_json = clean_json

# 4.
_has_cfn_attr = DBInstance.has_cfn_attr.__func__
DBInstance.has_cfn_attr = classmethod(
    lambda cls, attr: attr == "MasterUserSecret.SecretArn" or _has_cfn_attr(cls, attr)
)
_get_cfn_attribute = DBInstance.get_cfn_attribute


def get_cfn_attribute(self, attribute_name):
    if attribute_name == "MasterUserSecret.SecretArn":
        return self.master_user_secret.secret.arn
    return _get_cfn_attribute(self, attribute_name)


DBInstance.get_cfn_attribute = get_cfn_attribute
_create_db_instance = DBInstance.create_from_cloudformation_json.__func__


def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    backend = rds_backends[account_id][region_name]
    create = backend.create_db_instance
    managed = cloudformation_json["Properties"].get("ManageMasterUserPassword")

    def create_db_instance(db_kwargs):
        db_kwargs["manage_master_user_password"] = managed
        return create(db_kwargs)

    backend.create_db_instance = create_db_instance
    try:
        return _create_db_instance(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
    finally:
        del backend.create_db_instance


DBInstance.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)

# 5.
_apply = ChangeSet.apply


def apply(self):
    _apply(self)
    self.stack.template = self.template
    self.stack._parse_template()
    self.stack.output_map = self.stack._create_output_map()


ChangeSet.apply = apply

# 6.
from moto.events.models import EventPattern  # noqa: E402
from moto.events.responses import EventsHandler  # noqa: E402


def test_event_pattern(self):
    pattern = EventPattern.load(self._get_param("EventPattern"))
    return json.dumps({"Result": pattern.matches_event(json.loads(self._get_param("Event")))})


EventsHandler.test_event_pattern = test_event_pattern

from moto.server import main  # noqa: E402

main(sys.argv[1:])
