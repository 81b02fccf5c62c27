# The SQS broker's queues (crates/broker/src/sqs): per pool `<ns>_jobs_<pool>` (free),
# `<ns>_jobs_<pool>_paid`, their dead-letter queue `<ns>_dead_<pool>`; `<ns>_events` for job
# events, with a dead-letter queue of its own. The services re-assert these queues at start
# (CreateQueue with the same redrive policy), so the names and maxReceiveCount here must match
# the config file's pools and `max_deliveries`.

locals {
  ns = var.broker_namespace
  # "default" => { free = "clip_jobs_default", paid = "clip_jobs_default_paid" }
  job_queues = merge([
    for pool in var.pools : {
      "${pool}"      = { pool = pool, name = "${local.ns}_jobs_${pool}" }
      "${pool}_paid" = { pool = pool, name = "${local.ns}_jobs_${pool}_paid" }
    }
  ]...)
  # A job references its photo and account (ids, never content); one not run within a day has
  # long passed its deadline.
  job_retention_seconds = 86400
  # Dead letters wait for an operator (clipctl dlq list|replay|purge) for up to four days; the
  # photos they reference are deleted by the janitor long before, whatever happens to them.
  dead_retention_seconds = 345600
}

resource "aws_sqs_queue" "dead" {
  for_each                  = toset(var.pools)
  name                      = "${local.ns}_dead_${each.value}"
  message_retention_seconds = local.dead_retention_seconds
  kms_master_key_id         = aws_kms_key.clipfleet.arn
}

resource "aws_sqs_queue" "jobs" {
  for_each                  = local.job_queues
  name                      = each.value.name
  message_retention_seconds = local.job_retention_seconds
  # The workers hold a lease (visibility) per job and extend it by heartbeats; this is only the
  # initial value before the first extension.
  visibility_timeout_seconds = 120
  receive_wait_time_seconds  = 20
  kms_master_key_id          = aws_kms_key.clipfleet.arn
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead[each.value.pool].arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "dead" {
  for_each  = toset(var.pools)
  queue_url = aws_sqs_queue.dead[each.value].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [for key, queue in local.job_queues : aws_sqs_queue.jobs[key].arn if queue.pool == each.value]
  })
}

resource "aws_sqs_queue" "events_dead" {
  name                      = "${local.ns}_events_dead"
  message_retention_seconds = local.dead_retention_seconds
  kms_master_key_id         = aws_kms_key.clipfleet.arn
}

resource "aws_sqs_queue" "events" {
  name                       = "${local.ns}_events"
  message_retention_seconds  = local.job_retention_seconds
  visibility_timeout_seconds = 60
  receive_wait_time_seconds  = 20
  kms_master_key_id          = aws_kms_key.clipfleet.arn
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.events_dead.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "events_dead" {
  queue_url = aws_sqs_queue.events_dead.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.events.arn]
  })
}
