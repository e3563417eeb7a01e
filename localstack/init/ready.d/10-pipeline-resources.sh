#!/bin/sh
# Creates the pipeline's S3 bucket and SQS queues. The single source of
# truth for local resources: LocalStack runs it from
# /etc/localstack/init/ready.d when it is ready (docker compose), and
# scripts/demo runs it against the host LocalStack.
#
#   RAW_BUCKET             raw-posts   bucket for the raw objects
#   QUEUE_NAME             posts       queue of object messages
#   DLQ_NAME               posts-dlq   where messages go after MAX_RECEIVE_COUNT failed receives
#   MAX_RECEIVE_COUNT      5
#   VISIBILITY_TIMEOUT     60          seconds a received message stays hidden
#   AWS_REGION             us-east-1   where to create them: the services' region
#   AWS_ENDPOINT_URL       (host only) where LocalStack listens; inside LocalStack, awslocal knows
#
# Idempotent: running it twice changes nothing.
set -eu

RAW_BUCKET="${RAW_BUCKET:-raw-posts}"
QUEUE_NAME="${QUEUE_NAME:-posts}"
DLQ_NAME="${DLQ_NAME:-posts-dlq}"
MAX_RECEIVE_COUNT="${MAX_RECEIVE_COUNT:-5}"
VISIBILITY_TIMEOUT="${VISIBILITY_TIMEOUT:-60}"
# The region the services use (compose gives LocalStack their AWS_REGION):
# queues and buckets live in one region, and the services look in theirs.
# aws CLI v1 reads only AWS_DEFAULT_REGION.
export AWS_DEFAULT_REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"

if command -v awslocal >/dev/null 2>&1; then
  aws_() { awslocal "$@"; }
else
  aws_() { aws --endpoint-url "${AWS_ENDPOINT_URL:?set AWS_ENDPOINT_URL to the LocalStack URL}" "$@"; }
fi

if ! aws_ s3api head-bucket --bucket "$RAW_BUCKET" >/dev/null 2>&1; then
  # Outside us-east-1, S3 (and LocalStack) refuse a bucket without its
  # region: IllegalLocationConstraintException.
  if [ "$AWS_DEFAULT_REGION" = us-east-1 ]; then
    aws_ s3api create-bucket --bucket "$RAW_BUCKET" >/dev/null
  else
    aws_ s3api create-bucket --bucket "$RAW_BUCKET" \
      --create-bucket-configuration "LocationConstraint=$AWS_DEFAULT_REGION" >/dev/null
  fi
fi

dlq_url="$(aws_ sqs create-queue --queue-name "$DLQ_NAME" \
  --attributes MessageRetentionPeriod=1209600 --query QueueUrl --output text)"
dlq_arn="$(aws_ sqs get-queue-attributes --queue-url "$dlq_url" \
  --attribute-names QueueArn --query Attributes.QueueArn --output text)"

queue_url="$(aws_ sqs create-queue --queue-name "$QUEUE_NAME" --query QueueUrl --output text)"
# set-queue-attributes rather than create-queue attributes: create-queue
# fails when an existing queue has different ones, this converges instead.
aws_ sqs set-queue-attributes --queue-url "$queue_url" --attributes "{
  \"VisibilityTimeout\": \"$VISIBILITY_TIMEOUT\",
  \"ReceiveMessageWaitTimeSeconds\": \"20\",
  \"MessageRetentionPeriod\": \"345600\",
  \"RedrivePolicy\": \"{\\\"deadLetterTargetArn\\\":\\\"$dlq_arn\\\",\\\"maxReceiveCount\\\":\\\"$MAX_RECEIVE_COUNT\\\"}\"
}"

echo "pipeline resources: s3://$RAW_BUCKET, $queue_url (dead letters: $dlq_url after $MAX_RECEIVE_COUNT receives)"
