#!/usr/bin/env bash
# Deploys the pipeline to ECS: checks the network and the capacity the
# parameters ask for, builds and pushes the images for the instances'
# architecture, runs the database migrations as a one-off task and waits
# for them, then creates or updates the CloudFormation stack
# (ecs/pipeline.yaml). docs/aws.md says what each step needs.
#
#   ecs/deploy.sh [--resources FILE] [--migrations DIR] STACK VPC_ID SUBNET_ID,SUBNET_ID [Parameter=Value ...]
#
# --resources and --migrations put your resources file and the migrations
# `transformer schema --write` made for it in the stack's bucket, under
# their digest, and point every task at them (RESOURCES_FILE,
# MIGRATIONS_DIR): a change of resource needs no image build. Left out,
# the stack keeps those it has (none at first: the built-in resources).
# Needs docker (with buildx), the aws CLI (v2, or v1 from 1.29) with
# credentials for the target account and region (AWS_REGION or the CLI's
# configuration), jq and git. Images are tagged with the commit and the
# architecture (immutable in ECR); a dirty work tree is refused so a tag
# always names what it holds. Extra arguments are passed to `aws
# cloudformation deploy --parameter-overrides`. DEPLOY_WITHOUT_NAT=1 accepts
# subnets without a NAT route when the VPC has every endpoint the tasks need.
# The template goes to CloudFormation through a deploy bucket of the
# account's, api-pipeline-deploy-<account>-<region>, made on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
resources_file="" migrations_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --resources) [ $# -ge 2 ] || usage; resources_file="$2"; shift 2 ;;
    --migrations) [ $# -ge 2 ] || usage; migrations_dir="$2"; shift 2 ;;
    -*) usage ;;
    *) break ;;
  esac
done
[ $# -ge 3 ] || usage
stack="$1" vpc="$2" subnets="$3"
shift 3
overrides=("$@")

# The collector's copy in this account's ECR; ecs/pipeline.yaml names it too.
COLLECTOR_REPOSITORY=api-pipeline/collector

log() { printf '[deploy] %s\n' "$*" >&2; }
fail() { printf '[deploy] error: %s\n' "$*" >&2; exit 1; }

for tool in aws docker jq git; do
  command -v "$tool" >/dev/null || fail "$tool is needed"
done
# The capacity provider is named <stack>-capacity, and ECS refuses a
# capacity provider name that starts with "aws", "ecs" or "fargate"
# (CreateCapacityProvider, ECS API reference): the stack would fail
# half-way, at the cluster.
case "$(tr '[:upper:]' '[:lower:]' <<<"$stack")" in
  aws* | ecs* | fargate*)
    fail "the stack name $stack starts with aws, ecs or fargate, which ECS refuses at the start of its capacity provider's name ($stack-capacity): choose another" ;;
esac
# What --resources and --migrations name, checked before any call.
if [ -n "$resources_file" ] && { [ -d "$resources_file" ] || [ ! -r "$resources_file" ]; }; then
  fail "--resources $resources_file: not a file that can be read"
fi
if [ -n "$migrations_dir" ]; then
  [ -d "$migrations_dir" ] || fail "--migrations $migrations_dir: not a directory"
  # diesel's layout: a directory per migration, each with up.sql.
  compgen -G "$migrations_dir/*/up.sql" >/dev/null ||
    fail "--migrations $migrations_dir holds no migration (a directory per migration, with up.sql and down.sql, as transformer schema --write makes them)"
fi
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
    aws cloudformation get-template-summary --template-url "$template_url" \
      --query "Parameters[?ParameterKey=='$1'].DefaultValue" --output text
  fi
}

# The template is over the 51,200 bytes CloudFormation takes inline
# (CloudFormation User Guide, "quotas": template body size in a request),
# and `aws cloudformation deploy` refuses such a file without --s3-bucket.
# So it is handed over through S3 at every step, from a bucket of this
# account's: encrypted, public access blocked, old templates expired (the
# CLI and CloudFormation reach S3 over HTTPS only). --expected-bucket-owner,
# on the check and on the script's own writes, makes sure that a bucket of
# that name in another account is never written to.
deploy_bucket() {
  local answer
  bucket="api-pipeline-deploy-$account-$region"
  if answer="$(aws s3api head-bucket --bucket "$bucket" --expected-bucket-owner "$account" 2>&1)"; then
    return
  fi
  case "$answer" in
    *404* | *"Not Found"* | *NoSuchBucket*) ;;
    *403* | *Forbidden*) fail "the deploy bucket $bucket belongs to another account, or this one may not read it: $answer" ;;
    *) fail "cannot check the deploy bucket $bucket: $answer" ;;
  esac
  log "creating the deploy bucket $bucket"
  if [ "$region" = us-east-1 ]; then # us-east-1 takes no location constraint
    aws s3api create-bucket --bucket "$bucket" >/dev/null
  else
    aws s3api create-bucket --bucket "$bucket" --create-bucket-configuration "LocationConstraint=$region" >/dev/null
  fi
  aws s3api put-public-access-block --bucket "$bucket" --expected-bucket-owner "$account" \
    --public-access-block-configuration BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
  aws s3api put-bucket-encryption --bucket "$bucket" --expected-bucket-owner "$account" \
    --server-side-encryption-configuration '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}'
  aws s3api put-bucket-lifecycle-configuration --bucket "$bucket" --expected-bucket-owner "$account" \
    --lifecycle-configuration '{"Rules":[{"ID":"old-templates","Status":"Enabled","Filter":{"Prefix":""},"Expiration":{"Days":30},"AbortIncompleteMultipartUpload":{"DaysAfterInitiation":1}}]}'
}

# The template in the deploy bucket, under its digest, and its URL:
# path-style on the S3 endpoint, as `aws cloudformation deploy` builds its
# own (awscli customizations/s3uploader.py, to_path_style_s3_url).
upload_template() {
  local key
  key="$stack/$(sha256sum ecs/pipeline.yaml | cut -c1-16).yaml"
  aws s3api put-object --bucket "$bucket" --key "$key" --body ecs/pipeline.yaml \
    --expected-bucket-owner "$account" >/dev/null
  template_url="${AWS_ENDPOINT_URL_S3:-${AWS_ENDPOINT_URL:-https://s3.$region.amazonaws.com}}/$bucket/$key"
}

deploy_stack() { # SERVICES_ENABLED
  aws cloudformation deploy --stack-name "$stack" --template-file ecs/pipeline.yaml \
    --s3-bucket "$bucket" --s3-prefix "$stack" \
    --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
    --parameter-overrides VpcId="$vpc" PrivateSubnetIds="$subnets" ImageTag="$tag" \
    Architecture="$arch" SourcePort="$source_port" ServicesEnabled="$1" ${overrides[@]+"${overrides[@]}"}
}

# The account and region everything goes to.
region="$(aws configure get region 2>/dev/null || true)"
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-$region}}"
[ -n "$region" ] || fail "no region: set AWS_REGION"
account="$(aws sts get-caller-identity --query Account --output text)" ||
  fail "no AWS credentials that work: aws sts get-caller-identity failed"
deploy_bucket
upload_template

# 1. The stack's state. A first creation that failed leaves the stack in
#    ROLLBACK_COMPLETE, where CloudFormation accepts nothing but deletion:
#    say why it failed, delete it (it holds no data: the bucket it may
#    have made is kept, empty), and create it anew.
#    Only "does not exist" means there is none: any other failure (expired
#    credentials, no permission, a throttled call) stops here, rather than
#    creating the stack anew beside one that exists.
if ! status="$(aws cloudformation describe-stacks --stack-name "$stack" \
  --query 'Stacks[0].StackStatus' --output text 2>&1)"; then
  case "$status" in
    *"does not exist"*) status=NONE ;;
    *) fail "cannot read the stack $stack: $status" ;;
  esac
fi
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
case "$(uname -m)" in
  x86_64 | amd64) host_arch=x86_64 ;;
  aarch64 | arm64) host_arch=arm64 ;;
  *) host_arch="$(uname -m)" ;;
esac
if [ "$host_arch" != "$arch" ]; then
  log "warning: $instance_type is $arch and this machine $host_arch: unless your buildx builder runs on $arch, the release build runs under emulation, many times slower than a native one (docs/aws.md, \"Building for another architecture\")"
fi

# 3. Room at full scale: a deployment runs up to twice TransformerMaxTasks
#    (MaximumPercent 200) beside one importer.
max_tasks="$(param TransformerMaxTasks)" max_instances="$(param MaxInstances)"
per_instance=$((interfaces - 1))
needed=$((max_tasks * 2 + 1))
if [ $((per_instance * max_instances)) -lt "$needed" ]; then
  fail "MaxInstances=$max_instances x $per_instance tasks per $instance_type = $((per_instance * max_instances)) tasks, but a deployment at TransformerMaxTasks=$max_tasks needs $needed ($max_tasks x 2 + 1 importer): pass MaxInstances=$(((needed + per_instance - 1) / per_instance))"
fi

# 4. The port of the importer's source, which the tasks' security group
#    lets out beside 443 (AWS's APIs): from SourceUrl and the URLs in
#    ImportResources (http:// is 80), unless SourcePort is given. The
#    group holds one such port.
url_port() { # URL
  local scheme="${1%%://*}" authority="${1#*://}"
  authority="${authority%%/*}" authority="${authority%%\?*}" authority="${authority##*@}"
  if [[ "$authority" =~ :([0-9]+)$ ]]; then
    echo "${BASH_REMATCH[1]}"
  elif [ "$scheme" = http ]; then
    echo 80
  else
    echo 443
  fi
}
source_port=""
for kv in ${overrides[@]+"${overrides[@]}"}; do
  [ "${kv%%=*}" = SourcePort ] && source_port="${kv#*=}"
done
if [ -z "$source_port" ]; then
  source_urls=("$(param SourceUrl)")
  IFS=, read -r -a resources <<<"$(param ImportResources)"
  for resource in ${resources[@]+"${resources[@]}"}; do
    [[ "$resource" == *=* ]] && source_urls+=("${resource#*=}")
  done
  ports=()
  for url in "${source_urls[@]}"; do
    port="$(url_port "$url")"
    [ "$port" = 443 ] || [[ " ${ports[*]} " == *" $port "* ]] || ports+=("$port")
  done
  [ ${#ports[@]} -le 1 ] ||
    fail "the importer's sources listen on ports ${ports[*]}, and the tasks' security group lets one out beside 443: serve them on one port, or pass SourcePort= for the one to allow"
  source_port="${ports[0]:-443}"
fi

# 5. A way out of the private subnets: a NAT gateway (the importer fetches
#    SourceUrl from the internet), or else the endpoints of every AWS
#    service the instances and tasks call.
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
  # One name a line, compared whole: `ecs` is not `ecs-agent`.
  present="$(aws ec2 describe-vpc-endpoints --filters "Name=vpc-id,Values=$vpc" \
    --query 'VpcEndpoints[].ServiceName' --output json | jq -r '.[]')"
  missing=()
  for service in ecr.api ecr.dkr ecs ecs-agent ecs-telemetry logs s3 sqs secretsmanager ssm xray; do
    grep -qxF "com.amazonaws.$region.$service" <<<"$present" || missing+=("com.amazonaws.$region.$service")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    fail "without NAT the instances and tasks need these VPC endpoints, which $vpc lacks: ${missing[*]} (docs/aws.md, \"Network\")"
  fi
  [ "${DEPLOY_WITHOUT_NAT:-0}" = 1 ] ||
    fail "without NAT the importer reaches SourceUrl only inside the VPC; if it is, run again with DEPLOY_WITHOUT_NAT=1"
fi

# 6. First deploy: everything but what runs the images, which do not exist yet.
if [ "$status" = NONE ]; then
  log "creating $stack without services (repositories, bucket, queues, database, cluster)"
  deploy_stack false
fi

# 6b. The resources file and the migrations, in the stack's bucket under
#     their digest: a new file is a new key, so the task definitions change
#     and ECS rolls the services onto it, while tasks already running keep
#     reading the one they started with. The tasks' roles may read
#     config/resources/* and config/migrations/* only (ecs/pipeline.yaml).
put_config() { # FILE KEY
  aws s3api put-object --bucket "$(output RawBucket)" --key "$2" --body "$1" \
    --expected-bucket-owner "$account" >/dev/null
}
if [ -n "$resources_file" ]; then
  key="config/resources/$(sha256sum "$resources_file" | cut -c1-16).toml"
  log "putting $resources_file at $key"
  put_config "$resources_file" "$key"
  overrides+=("ResourcesFile=$key")
fi
if [ -n "$migrations_dir" ]; then
  # The digest of every file diesel reads, with its path in the directory.
  files=()
  while IFS= read -r -d '' file; do files+=("${file#./}"); done < <(
    cd "$migrations_dir" && find . -mindepth 2 -maxdepth 2 -type f \
      \( -name up.sql -o -name down.sql -o -name metadata.toml \) -print0 | sort -z)
  digest="$(cd "$migrations_dir" && sha256sum "${files[@]}" | sha256sum | cut -c1-16)"
  prefix="config/migrations/$digest/"
  log "putting ${#files[@]} migration file(s) of $migrations_dir under $prefix"
  for file in "${files[@]}"; do
    put_config "$migrations_dir/$file" "$prefix$file"
  done
  overrides+=("MigrationsPrefix=$prefix")
fi

# 7. Images for the instances' architecture, tagged with the commit.
registry="$(output ImporterRepositoryUri | cut -d/ -f1)"
aws ecr get-login-password | docker login --username AWS --password-stdin "$registry" >/dev/null

# The collector, copied from its public registry into this account's ECR,
# where the tasks pull it: ECR Public has no VPC endpoint, so without NAT
# no task could pull it from there, and its anonymous pulls are
# rate-limited. One repository for every stack of the account and region,
# a tag per collector version (the template names the same one).
collector_source="$(param CollectorImage)"
collector="$registry/$COLLECTOR_REPOSITORY:${collector_source##*:}"
if ! answer="$(aws ecr describe-repositories --repository-names "$COLLECTOR_REPOSITORY" 2>&1 >/dev/null)"; then
  case "$answer" in
    *RepositoryNotFoundException*)
      aws ecr create-repository --repository-name "$COLLECTOR_REPOSITORY" --image-tag-mutability IMMUTABLE \
        --image-scanning-configuration scanOnPush=true --encryption-configuration encryptionType=KMS >/dev/null ;;
    *) fail "cannot read the repository $COLLECTOR_REPOSITORY: $answer" ;;
  esac
fi
if aws ecr describe-images --repository-name "$COLLECTOR_REPOSITORY" --image-ids imageTag="${collector_source##*:}" >/dev/null 2>&1; then
  log "$collector is there already"
else
  log "copying $collector_source to $collector"
  docker buildx imagetools create --tag "$collector" "$collector_source"
fi
for service in importer transformer; do
  repository="$(output "$(tr '[:lower:]' '[:upper:]' <<<"${service:0:1}")${service:1}RepositoryUri")"
  if aws ecr describe-images --repository-name "${repository#*/}" --image-ids imageTag="$tag" >/dev/null 2>&1; then
    log "$repository:$tag is there already"
  else
    log "building and pushing $repository:$tag for $platform"
    docker buildx build --platform "$platform" --target "$service" -t "$repository:$tag" --push .
  fi
done

# 8. Migrations, with the new image, before any service runs it: a new
#    revision of the migrate task definition that differs only by image.
#    And with the resources file and migrations the services will run
#    with, which the stack's own revision has only after step 9. (`objects`:
#    moto's CloudFormation leaves a null where AWS::NoValue removes an
#    entry; AWS removes it.)
family="$(output MigrateTaskDefinition | sed 's#.*/##; s#:[0-9]*$##')"
transformer_image="$(output TransformerRepositoryUri):$tag"
raw_bucket="$(output RawBucket)"
resources_key="$(param ResourcesFile)" migrations_prefix="$(param MigrationsPrefix)"
revision="$(aws ecs describe-task-definition --task-definition "$family" --query taskDefinition --output json |
  jq --arg image "$transformer_image" --arg bucket "$raw_bucket" \
    --arg resources "$resources_key" --arg migrations "$migrations_prefix" '
    .containerDefinitions[0].image = $image
    | .containerDefinitions[0].environment = ([.containerDefinitions[0].environment[]? | objects
        | select(.name != "RESOURCES_FILE" and .name != "MIGRATIONS_DIR")]
      + (if $resources == "" then [] else [{name: "RESOURCES_FILE", value: "s3://\($bucket)/\($resources)"}] end)
      + (if $migrations == "" then [] else [{name: "MIGRATIONS_DIR", value: "s3://\($bucket)/\($migrations)"}] end))
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

# 9. The stack at the new tag, services on.
log "deploying $stack at $tag"
deploy_stack true
log "done: $(output QueueUrl)"
