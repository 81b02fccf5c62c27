output "bucket" {
  description = "Store URL for the config file: s3://<bucket>."
  value       = aws_s3_bucket.media.bucket
}

output "kms_key_arn" {
  value = aws_kms_key.clipfleet.arn
}

output "job_queue_urls" {
  description = "For the ScaledObject triggers of overlays/aws."
  value       = { for key, queue in aws_sqs_queue.jobs : key => queue.url }
}

output "events_queue_url" {
  value = aws_sqs_queue.events.url
}

output "role_arns" {
  description = "eks.amazonaws.com/role-arn annotations: clip-<component> service accounts, and the KEDA operator's."
  value       = merge({ for key, role in aws_iam_role.component : key => role.arn }, { keda = aws_iam_role.keda.arn })
}
