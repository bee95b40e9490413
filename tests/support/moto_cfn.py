"""moto_server for deploying the real template: moto's own server, with two changes to its
CloudFormation engine, and nothing else changed.

moto creates the resource types it models (S3 buckets, IAM roles, the API Gateway REST API, its
resources, methods and deployments, log groups, EventBridge rules, SNS topics...) in its own
backends, which the AWS CLI can then query. Two things stop it from taking
cloudformation/backlog-mirror.yaml as it is:

1. `!Ref AWS::NoValue` inside a list (a conditional IAM policy, say) is left there as a null,
   and moto's IAM model then crashes; CloudFormation removes the item. Here it is removed.
2. A type moto does not model (CodeBuild projects, API Gateway stages, SNS topic policies...) is
   skipped with a warning, and then any `!GetAtt` on it fails the whole stack. Here such a
   resource is recorded as a placeholder: it has a physical id and answers `Ref` and `!GetAtt`
   (an ARN-shaped `Arn`), is created, replaced and deleted with the stack, and does nothing
   else. Each type recorded this way is printed on stderr as `moto_cfn: placeholder TYPE`, so a
   test can say exactly what it did not exercise.
3. A stack created through a change set (what `aws cloudformation deploy` does) has no outputs,
   and an update through one keeps the old outputs. Here executing a change set refreshes them.
4. Parameters are compared as moto stores them (numbers as ints, lists as lists, only the keys
   given at creation), so a second identical deploy looks like a change. Here they are compared
   as CloudFormation shows them: every parameter, as a string (and a previous value reused by an
   update is passed on as a string, which moto's update otherwise crashes on). DescribeStacks
   likewise shows a
   CommaDelimitedList as given (`a,b`, not `['a', 'b']`), and `****` for a NoEcho one.
5. CreateChangeSet with nothing to change is refused ("No updates are to be performed"), as
   UpdateStack is; CloudFormation creates the change set with status FAILED and the reason "The
   submitted information didn't contain changes", which is what the AWS CLI's
   `--no-fail-on-empty-changeset` looks for. Here it does that.
6. An update that touches a resource whose Condition kept it from being created crashes moto
   (it updates None). Here such a resource is created if its condition now holds, and left out
   otherwise.
7. An update that touches a resource of a type moto can create but not update (the REST API
   when its resource policy changes) loses the resource, and everything that refers to it
   breaks. Here the resource is kept as it was: its new properties are not applied.
8. A bucket's VersioningConfiguration is ignored. Here `Status: Enabled` enables versioning.
9. `!FindInMap [BuildSize, ...]` finds the parameter BuildSize instead of the mapping of that
   name (CloudFormation keeps the two apart). Here it reads the template's Mappings.
10. AWS::CloudWatch::Alarm is not modelled. Here it is put into moto's CloudWatch as PutMetricAlarm
   would put it, after its properties pass botocore's model of PutMetricAlarm's input (a bad
   alarm fails the stack, as CloudFormation's call would); moto stores a Metrics Insights query
   and evaluates nothing, so what this shows is that the alarm is well-formed and deployed.
11. The YAML short form `!Condition Name` (inside `!And`, `!Or`, `!Not`) becomes
   `{"Fn::Condition": Name}`, which moto's condition parser does not know, so the condition is
   false; CloudFormation reads it as `{"Condition": Name}` (user guide, "Condition functions").
   Here it is read that way.
12. AWS::CodeBuild::Project is not modelled. Here it is put into moto's CodeBuild as
   CreateProject would put it, so StartBuild and BatchGetBuilds find it (moto's CodeBuild runs
   nothing: every build it reports has SUCCEEDED).
13. API Gateway's TestInvokeMethod is not implemented, and moto keeps no mapping template of a
   method CloudFormation made. Here the method's Integration and MethodResponses, as the stack
   gave them, are kept, and TestInvokeMethod runs them through apigw_render.py (the emulation of
   API Gateway's mapping the other tests use): the request mapping, then the action its
   X-Amz-Target names (StartBuild or BatchGetProjects) of moto's CodeBuild with the rendered
   body (a build's environment variable overrides recorded on it, as BatchGetBuilds shows them
   on AWS), then the integration responses. Its log has the lines AWS's execution log has for
   the request headers and body after the mapping and the body before it.
14. AWS::ApiGateway::Resource cannot be updated (7 keeps it as it was). Here a changed PathPart
   (a rotated webhook secret) is applied to the resource, as CloudFormation's update changes the
   API's path; its methods stay.

Usage: python3 moto_cfn.py [moto_server arguments]
"""

import datetime
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import apigw_render  # noqa: E402
import moto.apigateway.models as apigateway_models  # noqa: E402
import moto.apigateway.responses as apigateway_responses  # noqa: E402
import moto.codebuild.models as codebuild_models  # noqa: E402
import moto.cloudformation.models as models
import moto.cloudformation.utils as cfn_utils
import moto.cloudwatch.models as cloudwatch_models
import moto.cloudformation.parsing as parsing
import moto.cloudformation.responses as responses
import moto.s3.models as s3_models
from moto.utilities.utils import get_partition
from moto.core.common_models import CloudFormationModel

_seen = set()


class Placeholder(CloudFormationModel):
    # moto's model metaclass files every model under the service named in its module path.
    __module__ = "moto.cloudformation.placeholder"

    def __init__(self, resource_type, name, properties, account_id, region_name):
        self.resource_type = resource_type
        self.name = name
        self.properties = properties
        self.account_id = account_id
        self.region_name = region_name

    @staticmethod
    def cloudformation_name_type():
        return ""

    @staticmethod
    def cloudformation_type():
        return "moto_cfn::Placeholder"

    @classmethod
    def has_cfn_attr(cls, attr):
        return True

    @property
    def physical_resource_id(self):
        return self.name

    def get_cfn_attribute(self, attribute_name):
        service = self.resource_type.split("::")[1].lower()
        kind = self.resource_type.split("::")[2].lower()
        arn = f"arn:aws:{service}:{self.region_name}:{self.account_id}:{kind}/{self.name}"
        return arn if attribute_name == "Arn" else f"{arn}#{attribute_name}"

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        resource_type = kwargs["ResourceType"]
        if resource_type not in _seen:
            _seen.add(resource_type)
            print(f"moto_cfn: placeholder {resource_type}", file=sys.stderr, flush=True)
        return cls(
            resource_type,
            resource_name,
            cloudformation_json.get("Properties", {}),
            account_id,
            region_name,
        )

    @classmethod
    def update_from_cloudformation_json(
        cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
    ):
        return cls(
            original_resource.resource_type,
            original_resource.name,
            cloudformation_json.get("Properties", {}),
            account_id,
            region_name,
        )

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name
    ):
        return None


class NamedWithArn:
    """A model whose physical id is its name and whose one attribute is its Arn."""

    def __init__(self, name, arn):
        self.name = name
        self.arn = arn

    @classmethod
    def has_cfn_attr(cls, attr):
        return attr == "Arn"

    @property
    def physical_resource_id(self):
        return self.name

    def get_cfn_attribute(self, attribute_name):
        return self.arn


class CloudWatchAlarm(NamedWithArn, CloudFormationModel):
    __module__ = "moto.cloudwatch.cfn_alarm"

    def __init__(self, name, account_id, region_name):
        super().__init__(name, f"arn:aws:cloudwatch:{region_name}:{account_id}:alarm:{name}")

    @staticmethod
    def cloudformation_name_type():
        return "AlarmName"

    @staticmethod
    def cloudformation_type():
        return "AWS::CloudWatch::Alarm"

    @staticmethod
    def _put(name, properties, account_id, region_name):
        import botocore.session
        import botocore.validate

        params = dict(properties, AlarmName=name)
        for key in ("EvaluationPeriods", "DatapointsToAlarm", "Period"):
            if key in params:
                params[key] = int(params[key])
        if "Threshold" in params:
            params["Threshold"] = float(params["Threshold"])
        for query in params.get("Metrics", []):
            if "Period" in query:
                query["Period"] = int(query["Period"])
        shape = botocore.session.get_session().get_service_model("cloudwatch").operation_model("PutMetricAlarm").input_shape
        report = botocore.validate.ParamValidator().validate(params, shape)
        if report.has_errors():
            raise ValueError(f"AWS::CloudWatch::Alarm {name}: {report.generate_report()}")
        backend = cloudwatch_models.cloudwatch_backends[account_id][region_name]
        queries = [
            cloudwatch_models.MetricDataQuery(
                query_id=q["Id"],
                label=q.get("Label"),
                period=q.get("Period"),
                return_data=q.get("ReturnData"),
                expression=q.get("Expression"),
            )
            for q in params.get("Metrics", [])
        ] or None
        backend.put_metric_alarm(
            name=name,
            namespace=params.get("Namespace"),
            metric_name=params.get("MetricName"),
            comparison_operator=params["ComparisonOperator"],
            evaluation_periods=params["EvaluationPeriods"],
            period=params.get("Period"),
            threshold=params.get("Threshold"),
            statistic=params.get("Statistic"),
            description=params.get("AlarmDescription"),
            dimensions=params.get("Dimensions", []),
            alarm_actions=params.get("AlarmActions", []),
            metric_data_queries=queries,
            datapoints_to_alarm=params.get("DatapointsToAlarm"),
            ok_actions=params.get("OKActions", []),
            insufficient_data_actions=params.get("InsufficientDataActions", []),
            actions_enabled=params.get("ActionsEnabled", True),
            treat_missing_data=params.get("TreatMissingData"),
        )

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        cls._put(resource_name, cloudformation_json.get("Properties", {}), account_id, region_name)
        return cls(resource_name, account_id, region_name)

    @classmethod
    def update_from_cloudformation_json(
        cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
    ):
        name = cloudformation_json.get("Properties", {}).get("AlarmName", original_resource.name)
        if name != original_resource.name:
            cloudwatch_models.cloudwatch_backends[account_id][region_name].delete_alarms([original_resource.name])
        cls._put(name, cloudformation_json.get("Properties", {}), account_id, region_name)
        return cls(name, account_id, region_name)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name
    ):
        cloudwatch_models.cloudwatch_backends[account_id][region_name].delete_alarms([resource_name])

    def delete(self, account_id, region_name):
        cloudwatch_models.cloudwatch_backends[account_id][region_name].delete_alarms([self.name])


class CodeBuildProject(NamedWithArn, CloudFormationModel):
    __module__ = "moto.codebuild.cfn_project"

    @staticmethod
    def cloudformation_name_type():
        return "Name"

    @staticmethod
    def cloudformation_type():
        return "AWS::CodeBuild::Project"

    @staticmethod
    def _put(name, properties, account_id, region_name):
        backend = codebuild_models.codebuild_backends[account_id][region_name]
        environment = properties.get("Environment", {})
        backend.create_project(
            project_name=name,
            description=properties.get("Description"),
            project_source={"type": properties.get("Source", {}).get("Type", "NO_SOURCE")},
            artifacts={"type": properties.get("Artifacts", {}).get("Type", "NO_ARTIFACTS")},
            environment={
                "type": environment.get("Type"),
                "image": environment.get("Image"),
                "computeType": environment.get("ComputeType"),
                "environmentVariables": [
                    {"name": v["Name"], "value": v["Value"], "type": v.get("Type", "PLAINTEXT")}
                    for v in environment.get("EnvironmentVariables", [])
                ],
            },
            service_role=properties.get("ServiceRole", "some_role"),
            tags=None,
            cache=None,
            timeout=None,
            queued_timeout=None,
            source_version=None,
            logs_config=None,
            vpc_config=None,
        )
        return backend.codebuild_projects[name].arn

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        properties = cloudformation_json.get("Properties", {})
        name = properties.get("Name", resource_name)
        return cls(name, cls._put(name, properties, account_id, region_name))

    @classmethod
    def update_from_cloudformation_json(
        cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name
    ):
        properties = cloudformation_json.get("Properties", {})
        name = properties.get("Name", original_resource.name)
        backend = codebuild_models.codebuild_backends[account_id][region_name]
        if name != original_resource.name:
            backend.delete_project(original_resource.name)
        return cls(name, cls._put(name, properties, account_id, region_name))

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name
    ):
        codebuild_models.codebuild_backends[account_id][region_name].delete_project(resource_name)

    def delete(self, account_id, region_name):
        codebuild_models.codebuild_backends[account_id][region_name].delete_project(self.name)


_create_method = apigateway_models.Method.create_from_cloudformation_json.__func__


def create_method(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    method = _create_method(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
    method.cfn_properties = cloudformation_json["Properties"]
    return method


def update_api_resource(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
    original_resource.path_part = cloudformation_json["Properties"]["PathPart"]
    return original_resource


def path_parameters(template, path):
    """The path parameters of PATH for the resource path TEMPLATE (`{name}`, greedy `{name+}`)."""
    wanted, given, params = template.strip("/").split("/"), path.strip("/").split("/"), {}
    for i, part in enumerate(wanted):
        if part.startswith("{") and part.endswith("+}"):
            params[part[1:-2]] = "/".join(given[i:])
            return params
        if i >= len(given):
            return params
        if part.startswith("{") and part.endswith("}"):
            params[part[1:-1]] = given[i]
    return params


def start_build(request_body, account_id, region_name):
    """StartBuild of moto's CodeBuild as an AWS-service integration calls it: (status, body)."""
    try:
        request = json.loads(request_body)
    except ValueError as err:
        return 400, json.dumps({"__type": "SerializationException", "message": str(err)})
    backend = codebuild_models.codebuild_backends[account_id][region_name]
    project = request.get("projectName")
    if project not in backend.codebuild_projects:
        return 400, json.dumps({"__type": "ResourceNotFoundException", "message": f"Project cannot be found: {project}"})
    build = backend.start_build(project)
    build["environment"] = dict(build.get("environment", {}))
    build["environment"]["environmentVariables"] = request.get("environmentVariablesOverride", [])
    return 200, json.dumps({"build": build}, default=str)


def codebuild_call(target, request_body, account_id, region_name):
    """The CodeBuild action the integration request names in X-Amz-Target: (status, body)."""
    if target == "CodeBuild_20161006.StartBuild":
        return start_build(request_body, account_id, region_name)
    if target == "CodeBuild_20161006.BatchGetProjects":
        backend = codebuild_models.codebuild_backends[account_id][region_name]
        names = json.loads(request_body).get("names", [])
        found = backend.batch_get_projects(names)
        known = {p["name"] for p in found}
        return 200, json.dumps(
            {"projects": found, "projectsNotFound": [n for n in names if n not in known]}, default=str
        )
    return 400, json.dumps({"__type": "UnknownOperationException", "message": str(target)})


def test_invoke_method(self):
    parts = self.path.split("/")
    api_id, resource_id, verb = parts[2], parts[4], parts[6]
    backend = apigateway_models.apigateway_backends[self.current_account][self.region]
    method = backend.get_method(api_id, resource_id, verb)
    properties = getattr(method, "cfn_properties", None)
    if properties is None:
        return 400, {}, json.dumps({"message": "only methods a stack created can be test-invoked here"})
    given = json.loads(self.body) if self.body else {}
    template = backend.get_resource(api_id, resource_id).get_path()
    path = (given.get("pathWithQueryString") or template).split("?", 1)[0]
    request = {
        "method": verb,
        "headers": given.get("headers") or {},
        "body": given.get("body") or "",
        "path": path_parameters(template, path),
    }
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%a %b %d %H:%M:%S UTC %Y")
    log = [f"Execution log for request test-request", f"{now} : Method request body before transformations: {request['body']}"]
    integration = properties["Integration"]
    mapped = apigw_render.run({"mode": "request", "integration": integration, "request": request})
    if "error" in mapped:
        log.append(f"{now} : Execution failed due to configuration error: {mapped['error']}")
        answer = {"status": 500, "body": json.dumps({"message": "Internal server error"})}
    elif mapped["status"] != 200:
        answer = mapped
    else:
        headers = ", ".join(f"{k}={v}" for k, v in mapped["headers"].items())
        log.append(f"{now} : Endpoint request headers: {{{headers}}}")
        log.append(f"{now} : Endpoint request body after transformations: {mapped['body']}")
        status, body = codebuild_call(
            mapped["headers"].get("X-Amz-Target"), mapped["body"], self.current_account, self.region
        )
        log.append(f"{now} : Endpoint response body before transformations: {body}")
        answer = apigw_render.run({
            "mode": "response",
            "integration": integration,
            "method_responses": [r["StatusCode"] for r in properties.get("MethodResponses", [])],
            "request": request,
            "backend": {"status": status, "body": body},
        })
        if "error" in answer:
            log.append(f"{now} : Execution failed due to configuration error: {answer['error']}")
            answer = {"status": 500, "body": json.dumps({"message": "Internal server error"})}
    log.append(f"{now} : Method completed with status: {answer['status']}")
    return json.dumps({
        "status": answer["status"],
        "body": answer["body"],
        "headers": {"Content-Type": "application/json"},
        "log": "\n".join(log) + "\n",
        "latency": 1,
    })


_yaml_tag_constructor = cfn_utils.yaml_tag_constructor


def yaml_tag_constructor(loader, tag, node):
    if tag == "!Condition":
        return {"Condition": loader.construct_scalar(node)}
    return _yaml_tag_constructor(loader, tag, node)


_resource_class_from_type = parsing.resource_class_from_type


def resource_class_from_type(resource_type):
    if (
        resource_type in parsing.NULL_MODELS
        or resource_type.startswith("Custom::")
        or resource_type in parsing.get_model_map()
    ):
        return _resource_class_from_type(resource_type)
    return Placeholder


_clean_json = parsing.clean_json


def clean_json(resource_json, resources_map):
    if isinstance(resource_json, dict) and "Fn::FindInMap" in resource_json:
        name, top, second = (clean_json(a, resources_map) for a in resource_json["Fn::FindInMap"])
        return resources_map._template["Mappings"][name][top][second]
    cleaned = _clean_json(resource_json, resources_map)
    if isinstance(resource_json, list) and isinstance(cleaned, list):
        return [
            value
            for value, source in zip(cleaned, resource_json)
            if not (value is None and _is_no_value(source))
        ]
    return cleaned


def _is_no_value(node):
    if isinstance(node, dict):
        if node.get("Ref") == "AWS::NoValue":
            return True
        if "Fn::If" in node:
            return any(_is_no_value(branch) for branch in node["Fn::If"][1:])
    return False


def _as_shown(value):
    return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)


def has_parameters(self, other_parameters):
    mine = {k: _as_shown(v) for k, v in self.stack_parameters.items()}
    return mine == {k: _as_shown(v) for k, v in other_parameters.items()}


_validate_different_update = responses.CloudFormationResponse._validate_different_update


def validate_different_update(self, incoming_params, stack_body, old_stack):
    if self._get_action() == "CreateChangeSet":
        return None
    return _validate_different_update(self, incoming_params, stack_body, old_stack)


_resource_map_update = parsing.ResourceMap.update


def resource_map_update(self, template, parameters=None):
    if parameters:
        parameters = {k: _as_shown(v) for k, v in parameters.items()}
    return _resource_map_update(self, template, parameters)


_parse_and_update_resource = parsing.parse_and_update_resource


def parse_and_update_resource(logical_id, resource_json, resources_map, account_id, region_name):
    original = resources_map._parsed_resources.get(logical_id)
    if original is None:
        return parsing.parse_and_create_resource(
            logical_id, resource_json, resources_map, account_id, region_name
        )
    resource_class = parsing.resource_class_from_type(resource_json["Type"])
    if hasattr(resource_class.update_from_cloudformation_json, "__isabstractmethod__"):
        print(f"moto_cfn: kept {resource_json['Type']} {logical_id} as it was", file=sys.stderr, flush=True)
        return original
    return _parse_and_update_resource(
        logical_id, resource_json, resources_map, account_id, region_name
    )


_execute_change_set = models.CloudFormationBackend.execute_change_set


def execute_change_set(self, change_set_name, stack_name=None):
    _execute_change_set(self, change_set_name, stack_name)
    stack = self.describe_change_set(change_set_name).stack
    stack._parse_template()
    stack.output_map = stack._create_output_map()


def parameter_list(self):
    return [
        {
            "ParameterKey": key,
            "ParameterValue": "****"
            if key in self.resource_map.no_echo_parameter_keys
            else _as_shown(value),
        }
        for key, value in self.resource_map.resolved_parameters.items()
    ]


_create_bucket = s3_models.FakeBucket.create_from_cloudformation_json.__func__


def create_bucket(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    bucket = _create_bucket(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
    versioning = cloudformation_json.get("Properties", {}).get("VersioningConfiguration", {})
    if versioning.get("Status") == "Enabled":
        backend = s3_models.s3_backends[account_id][get_partition(region_name)]
        backend.put_bucket_versioning(bucket.name, "Enabled")
    return bucket


parsing.resource_class_from_type = resource_class_from_type
apigateway_models.Method.create_from_cloudformation_json = classmethod(create_method)
apigateway_models.Resource.update_from_cloudformation_json = classmethod(update_api_resource)
apigateway_responses.APIGatewayResponse.test_invoke_method = test_invoke_method
models.yaml_tag_constructor = yaml_tag_constructor
responses.yaml_tag_constructor = yaml_tag_constructor
s3_models.FakeBucket.create_from_cloudformation_json = classmethod(create_bucket)
parsing.clean_json = clean_json
parsing.parse_and_update_resource = parse_and_update_resource
models.Stack.has_parameters = has_parameters
parsing.ResourceMap.update = resource_map_update
responses.CloudFormationResponse._validate_different_update = validate_different_update
models.CloudFormationBackend.execute_change_set = execute_change_set
models.Stack.parameter_list = property(parameter_list)

from moto.server import main  # noqa: E402

main(sys.argv[1:])
