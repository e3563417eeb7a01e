#!/usr/bin/env bash
# Deploys the pipeline to ECS: builds and pushes the images, runs the
# database migrations as a one-off task and waits for them, then creates or
# updates the CloudFormation stack (ecs/pipeline.yaml).
#
#   ecs/deploy.sh STACK VPC_ID SUBNET_ID,SUBNET_ID [Parameter=Value ...]
#
# Needs docker (with buildx), the aws CLI v2 with credentials for the
# target account and region (AWS_REGION or the CLI's configuration), jq and
# git. Images are tagged with the commit (immutable in ECR); a dirty work
# tree is refused so a tag always names what it holds. Extra arguments are
# passed to `aws cloudformation deploy --parameter-overrides`.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 3 ] || usage
stack="$1" vpc="$2" subnets="$3"
shift 3

for tool in aws docker jq git; do
  command -v "$tool" >/dev/null || { echo "deploy: $tool is needed" >&2; exit 1; }
done
if [ -n "$(git status --porcelain)" ]; then
  echo "deploy: the work tree has uncommitted changes; commit them first" >&2
  exit 1
fi
tag="$(git rev-parse --short=12 HEAD)"
log() { printf '[deploy] %s\n' "$*" >&2; }

output() { # NAME
  aws cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}

deploy_stack() { # SERVICES_ENABLED [Parameter=Value ...]
  local enabled="$1"
  shift
  aws cloudformation deploy --stack-name "$stack" --template-file ecs/pipeline.yaml \
    --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
    --parameter-overrides VpcId="$vpc" PrivateSubnetIds="$subnets" ImageTag="$tag" \
    ServicesEnabled="$enabled" "$@"
}

# 1. First deploy: everything but what runs the images, which do not exist yet.
if ! aws cloudformation describe-stacks --stack-name "$stack" >/dev/null 2>&1; then
  log "creating $stack without services (repositories, bucket, queues, database, cluster)"
  deploy_stack false "$@"
fi

# 2. Images, tagged with the commit.
registry="$(output ImporterRepositoryUri | cut -d/ -f1)"
aws ecr get-login-password | docker login --username AWS --password-stdin "$registry" >/dev/null
for service in importer transformer; do
  repository="$(output "$(tr '[:lower:]' '[:upper:]' <<<"${service:0:1}")${service:1}RepositoryUri")"
  if aws ecr describe-images --repository-name "${repository#*/}" --image-ids imageTag="$tag" >/dev/null 2>&1; then
    log "$repository:$tag is there already"
  else
    log "building and pushing $repository:$tag"
    docker buildx build --platform linux/amd64 --target "$service" -t "$repository:$tag" --push .
  fi
done

# 3. Migrations, with the new image, before any service runs it: a new
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
task="$(aws ecs run-task --cluster "$cluster" --task-definition "$migrate_arn" \
  --capacity-provider-strategy "capacityProvider=$capacity,weight=1" \
  --network-configuration "$network" --query 'tasks[0].taskArn' --output text)"
# A first run waits for managed scaling to start an instance.
for _ in $(seq 1 4); do
  aws ecs wait tasks-stopped --cluster "$cluster" --tasks "$task" && break
done
code="$(aws ecs describe-tasks --cluster "$cluster" --tasks "$task" \
  --query 'tasks[0].containers[0].exitCode' --output text)"
if [ "$code" != "0" ]; then
  log "the migrate task $task ended with exit code $code; see its logs in CloudWatch (stream prefix migrate)"
  exit 1
fi

# 4. The stack at the new tag, services on.
log "deploying $stack at $tag"
deploy_stack true "$@"
log "done: $(output QueueUrl)"
