#!/usr/bin/env bash
# Deploys the pipeline to ECS: checks the network and the capacity the
# parameters ask for, builds and pushes the images for the instances'
# architecture, runs the database migrations as a one-off task and waits
# for them, then creates or updates the CloudFormation stack
# (ecs/pipeline.yaml). docs/aws.md says what each step needs.
#
#   ecs/deploy.sh STACK VPC_ID SUBNET_ID,SUBNET_ID [Parameter=Value ...]
#
# Needs docker (with buildx), the aws CLI v2 with credentials for the
# target account and region (AWS_REGION or the CLI's configuration), jq and
# git. Images are tagged with the commit and the architecture (immutable in
# ECR); a dirty work tree is refused so a tag always names what it holds.
# Extra arguments are passed to `aws cloudformation deploy
# --parameter-overrides`. DEPLOY_WITHOUT_NAT=1 accepts subnets without a
# NAT route when the VPC has every endpoint the tasks need.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 3 ] || usage
stack="$1" vpc="$2" subnets="$3"
shift 3
overrides=("$@")

log() { printf '[deploy] %s\n' "$*" >&2; }
fail() { printf '[deploy] error: %s\n' "$*" >&2; exit 1; }

for tool in aws docker jq git; do
  command -v "$tool" >/dev/null || fail "$tool is needed"
done
if [ -n "$(git status --porcelain)" ]; then
  fail "the work tree has uncommitted changes; commit them first"
fi
commit="$(git rev-parse --short=12 HEAD)"

output() { # NAME
  aws cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}

# The value a parameter will have: the one given here, else the stack's
# current one, else the template's default.
param() { # NAME
  local kv
  for kv in ${overrides[@]+"${overrides[@]}"}; do
    if [ "${kv%%=*}" = "$1" ]; then echo "${kv#*=}"; return; fi
  done
  if [ "$status" != NONE ]; then
    aws cloudformation describe-stacks --stack-name "$stack" \
      --query "Stacks[0].Parameters[?ParameterKey=='$1'].ParameterValue" --output text
  else
    aws cloudformation get-template-summary --template-body file://ecs/pipeline.yaml \
      --query "Parameters[?ParameterKey=='$1'].DefaultValue" --output text
  fi
}

deploy_stack() { # SERVICES_ENABLED
  aws cloudformation deploy --stack-name "$stack" --template-file ecs/pipeline.yaml \
    --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
    --parameter-overrides VpcId="$vpc" PrivateSubnetIds="$subnets" ImageTag="$tag" \
    Architecture="$arch" ServicesEnabled="$1" ${overrides[@]+"${overrides[@]}"}
}

# 1. The stack's state. A first creation that failed leaves the stack in
#    ROLLBACK_COMPLETE, where CloudFormation accepts nothing but deletion:
#    say why it failed, delete it (it holds no data: the bucket it may
#    have made is kept, empty), and create it anew.
status="$(aws cloudformation describe-stacks --stack-name "$stack" \
  --query 'Stacks[0].StackStatus' --output text 2>/dev/null || echo NONE)"
case "$status" in
  ROLLBACK_COMPLETE)
    log "$stack is in ROLLBACK_COMPLETE: its creation failed:"
    aws cloudformation describe-stack-events --stack-name "$stack" --output json |
      jq -r '.StackEvents | map(select(.ResourceStatus == "CREATE_FAILED")) | reverse | .[:5][]
        | "  \(.LogicalResourceId): \(.ResourceStatusReason)"' >&2
    log "deleting $stack to create it again"
    aws cloudformation delete-stack --stack-name "$stack"
    aws cloudformation wait stack-delete-complete --stack-name "$stack"
    status=NONE
    ;;
  *_IN_PROGRESS)
    fail "$stack is $status: wait until it has finished, then deploy again" ;;
  *_FAILED)
    fail "$stack is $status: see its events in the CloudFormation console; docs/aws.md, \"A stack that failed\"" ;;
esac

# 2. What the instances are: their architecture (images and AMI follow
#    it) and how many awsvpc tasks each holds (one per network interface
#    but the instance's own).
instance_type="$(param InstanceType)"
# shellcheck disable=SC2016 # backquotes are JMESPath literals
read -r interfaces architectures < <(aws ec2 describe-instance-types --instance-types "$instance_type" \
  --query 'InstanceTypes[0].[NetworkInfo.MaximumNetworkInterfaces, join(`,`, ProcessorInfo.SupportedArchitectures)]' \
  --output text)
case ",$architectures," in
  *,arm64,*) arch=arm64 platform=linux/arm64 ;;
  *,x86_64,*) arch=x86_64 platform=linux/amd64 ;;
  *) fail "$instance_type runs $architectures, neither x86_64 nor arm64" ;;
esac
tag="$commit-$arch"

# 3. Room at full scale: a deployment runs up to twice TransformerMaxTasks
#    (MaximumPercent 200) beside one importer.
max_tasks="$(param TransformerMaxTasks)" max_instances="$(param MaxInstances)"
per_instance=$((interfaces - 1))
needed=$((max_tasks * 2 + 1))
if [ $((per_instance * max_instances)) -lt "$needed" ]; then
  fail "MaxInstances=$max_instances x $per_instance tasks per $instance_type = $((per_instance * max_instances)) tasks, but a deployment at TransformerMaxTasks=$max_tasks needs $needed ($max_tasks x 2 + 1 importer): pass MaxInstances=$(((needed + per_instance - 1) / per_instance))"
fi

# 4. A way out of the private subnets: a NAT gateway (the importer fetches
#    SourceUrl from the internet), or else the endpoints of every AWS
#    service the instances and tasks call.
region="$(aws configure get region 2>/dev/null || true)"
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-$region}}"
[ -n "$region" ] || fail "no region: set AWS_REGION"
no_way_out=()
for subnet in ${subnets//,/ }; do
  routes="$(aws ec2 describe-route-tables --filters "Name=association.subnet-id,Values=$subnet" \
    --query 'RouteTables[0].Routes' --output json)"
  if [ "$routes" = null ]; then # the subnet uses the VPC's main route table
    routes="$(aws ec2 describe-route-tables --filters "Name=vpc-id,Values=$vpc" "Name=association.main,Values=true" \
      --query 'RouteTables[0].Routes' --output json)"
  fi
  target="$(jq -r '.[]? | select(.DestinationCidrBlock == "0.0.0.0/0")
    | (.NatGatewayId // .TransitGatewayId // .NetworkInterfaceId // .InstanceId // .GatewayId // "")' <<<"$routes")"
  case "$target" in
    nat-* | tgw-* | eni-* | i-*) ;;
    igw-*) no_way_out+=("$subnet (a public subnet: tasks get no public address, so no way out)") ;;
    *) no_way_out+=("$subnet (no default route)") ;;
  esac
done
if [ ${#no_way_out[@]} -gt 0 ]; then
  log "no NAT route from: ${no_way_out[*]}"
  present="$(aws ec2 describe-vpc-endpoints --filters "Name=vpc-id,Values=$vpc" \
    --query 'VpcEndpoints[].ServiceName' --output text)"
  missing=()
  for service in ecr.api ecr.dkr ecs ecs-agent ecs-telemetry logs s3 sqs secretsmanager ssm xray; do
    grep -qw "com.amazonaws.$region.$service" <<<"$present" || missing+=("com.amazonaws.$region.$service")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    fail "without NAT the instances and tasks need these VPC endpoints, which $vpc lacks: ${missing[*]} (docs/aws.md, \"Network\")"
  fi
  [ "${DEPLOY_WITHOUT_NAT:-0}" = 1 ] ||
    fail "without NAT the importer reaches SourceUrl only inside the VPC; if it is, run again with DEPLOY_WITHOUT_NAT=1"
fi

# 5. First deploy: everything but what runs the images, which do not exist yet.
if [ "$status" = NONE ]; then
  log "creating $stack without services (repositories, bucket, queues, database, cluster)"
  deploy_stack false
fi

# 6. Images for the instances' architecture, tagged with the commit.
registry="$(output ImporterRepositoryUri | cut -d/ -f1)"
aws ecr get-login-password | docker login --username AWS --password-stdin "$registry" >/dev/null
for service in importer transformer; do
  repository="$(output "$(tr '[:lower:]' '[:upper:]' <<<"${service:0:1}")${service:1}RepositoryUri")"
  if aws ecr describe-images --repository-name "${repository#*/}" --image-ids imageTag="$tag" >/dev/null 2>&1; then
    log "$repository:$tag is there already"
  else
    log "building and pushing $repository:$tag for $platform"
    docker buildx build --platform "$platform" --target "$service" -t "$repository:$tag" --push .
  fi
done

# 7. Migrations, with the new image, before any service runs it: a new
#    revision of the migrate task definition that differs only by image.
family="$(output MigrateTaskDefinition | sed 's#.*/##; s#:[0-9]*$##')"
transformer_image="$(output TransformerRepositoryUri):$tag"
revision="$(aws ecs describe-task-definition --task-definition "$family" --query taskDefinition --output json |
  jq --arg image "$transformer_image" '.containerDefinitions[0].image = $image
    | {family, taskRoleArn, executionRoleArn, networkMode, containerDefinitions, volumes,
       requiresCompatibilities, cpu, memory} | with_entries(select(.value != null))')"
migrate_arn="$(aws ecs register-task-definition --cli-input-json "$revision" \
  --query taskDefinition.taskDefinitionArn --output text)"
log "migrating with $migrate_arn"
cluster="$(output ClusterName)"
network="awsvpcConfiguration={subnets=[$subnets],securityGroups=[$(output TaskSecurityGroup)],assignPublicIp=DISABLED}"
capacity="$(aws ecs describe-clusters --clusters "$cluster" \
  --query 'clusters[0].defaultCapacityProviderStrategy[0].capacityProvider' --output text)"
started="$(aws ecs run-task --cluster "$cluster" --task-definition "$migrate_arn" \
  --capacity-provider-strategy "capacityProvider=$capacity,weight=1" \
  --network-configuration "$network" --output json)"
# A task ECS could not place comes back at once as a failure, not a task.
failures="$(jq -r '.failures[]? | "\(.arn // "task"): \(.reason)\(if .detail then " (\(.detail))" else "" end)"' <<<"$started")"
[ -z "$failures" ] || fail "ECS did not start the migrate task: $failures"
task="$(jq -r '.tasks[0].taskArn' <<<"$started")"
# A first run waits for managed scaling to start an instance: up to 30 min.
for _ in 1 2 3; do
  aws ecs wait tasks-stopped --cluster "$cluster" --tasks "$task" 2>/dev/null && break
done
stopped="$(aws ecs describe-tasks --cluster "$cluster" --tasks "$task" --output json)"
read -r last_status code < <(jq -r '.tasks[0] | "\(.lastStatus) \(.containers[0].exitCode // "none")"' <<<"$stopped")
if [ "$last_status" != STOPPED ]; then
  fail "the migrate task $task is still $last_status after 30 minutes; see it in the ECS console"
fi
if [ "$code" != 0 ]; then
  jq -r '.tasks[0] | "  stopped: \(.stoppedReason // "-") (\(.stopCode // "-"))",
    "  container: exit code \(.containers[0].exitCode // "none"), \(.containers[0].reason // "no reason given")"' <<<"$stopped" >&2
  fail "the migrate task $task failed; its log: group $(output TransformerLogGroup), stream migrate/migrate/${task##*/}"
fi

# 8. The stack at the new tag, services on.
log "deploying $stack at $tag"
deploy_stack true
log "done: $(output QueueUrl)"
