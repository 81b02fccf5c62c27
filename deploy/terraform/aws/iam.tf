# One role per component, assumed by its Kubernetes service account through IRSA, each with
# only what its code does (DESIGN §8: a worker may touch photos and videos, never list the
# bucket's accounts or reach the database; ingest may put photos, not read them back).

locals {
  bucket_arn = aws_s3_bucket.media.arn
  objects    = { for prefix in ["inputs", "outputs", "sessions", "tombstones", "models"] : prefix => "${aws_s3_bucket.media.arn}/${prefix}/*" }

  job_queue_arns  = [for queue in aws_sqs_queue.jobs : queue.arn]
  dead_queue_arns = [for queue in aws_sqs_queue.dead : queue.arn]
  all_queue_arns  = concat(local.job_queue_arns, local.dead_queue_arns, [aws_sqs_queue.events.arn, aws_sqs_queue.events_dead.arn])

  components = {
    ingest  = data.aws_iam_policy_document.ingest.json
    worker  = data.aws_iam_policy_document.worker.json
    janitor = data.aws_iam_policy_document.janitor.json
    console = data.aws_iam_policy_document.console.json
  }
}

data "aws_iam_policy_document" "irsa" {
  for_each = local.components
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.k8s_namespace}:clip-${each.key}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "component" {
  for_each             = local.components
  name                 = "clipfleet-${each.key}"
  assume_role_policy   = data.aws_iam_policy_document.irsa[each.key].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "component" {
  for_each = local.components
  name     = "clipfleet-${each.key}"
  role     = aws_iam_role.component[each.key].id
  policy   = each.value
}

# --- statements every component needs ---

# SSE-KMS on the bucket and the queues: S3 and SQS call KMS for the caller, and only for them.
data "aws_iam_policy_document" "common" {
  statement {
    sid       = "KmsThroughS3AndSqs"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.clipfleet.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.region}.amazonaws.com", "sqs.${var.region}.amazonaws.com"]
    }
  }
  # The broker re-asserts its queues at start (CreateQueue with identical attributes returns the
  # existing queue) and reads the dead-letter ARN and redrive policy. Only these queue ARNs:
  # CreateQueue of any other name is denied.
  statement {
    sid       = "QueueTopology"
    actions   = ["sqs:CreateQueue", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
    resources = local.all_queue_arns
  }
  # Without ListBucket, S3 answers 403 instead of 404 for a missing key, and "not found" is an
  # answer the services act on (the worker's "video already stored?" and tombstone checks, the
  # janitor's verified deletion, ingest's 404 for a deleted video). Keys hold ids, not content.
  statement {
    sid       = "NotFoundIsNotForbidden"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
  }
}

# --- ingest: put photos, serve and delete videos, publish jobs, consume events ---
data "aws_iam_policy_document" "ingest" {
  source_policy_documents = [data.aws_iam_policy_document.common.json]
  statement {
    sid = "PutPhotos"
    # DeleteObject: when a publish is not confirmed, ingest deletes the photo it just stored.
    actions   = ["s3:PutObject", "s3:DeleteObject"]
    resources = [local.objects.inputs]
  }
  statement {
    sid       = "ServeAndDeleteVideos"
    actions   = ["s3:GetObject", "s3:DeleteObject"]
    resources = [local.objects.outputs]
  }
  statement {
    sid       = "PublishJobs"
    actions   = ["sqs:SendMessage"]
    resources = local.job_queue_arns
  }
  statement {
    sid       = "ConsumeEvents"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
    resources = [aws_sqs_queue.events.arn]
  }
}

# --- worker: get/delete photos, put videos, read tombstones and models, run jobs ---
data "aws_iam_policy_document" "worker" {
  source_policy_documents = [data.aws_iam_policy_document.common.json]
  statement {
    sid       = "TakePhotos"
    actions   = ["s3:GetObject", "s3:DeleteObject"]
    resources = [local.objects.inputs]
  }
  statement {
    sid = "PutVideos"
    # GetObject: a redelivered job whose video exists only finishes (idempotent output key).
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = [local.objects.outputs]
  }
  statement {
    sid       = "ReadTombstonesAndModels"
    actions   = ["s3:GetObject"]
    resources = [local.objects.tombstones, local.objects.models]
  }
  statement {
    sid = "RunJobs"
    # ChangeMessageVisibility: lease heartbeats and release on drain. SendMessage on the job
    # queues: a delayed retry is a new copy sent with a delay (the original is deleted).
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:SendMessage"]
    resources = local.job_queue_arns
  }
  statement {
    sid       = "ReportAndDeadLetter"
    actions   = ["sqs:SendMessage"]
    resources = concat([aws_sqs_queue.events.arn], local.dead_queue_arns)
  }
}

# --- janitor: list and delete media, write and remove tombstones ---
data "aws_iam_policy_document" "janitor" {
  source_policy_documents = [data.aws_iam_policy_document.common.json]
  statement {
    sid = "SweepMedia"
    # GetObject: read object metadata (age, seal header) before deciding; DeleteObjectVersion:
    # should versioning ever be switched on, the janitor can still really delete.
    actions   = ["s3:GetObject", "s3:DeleteObject", "s3:DeleteObjectVersion"]
    resources = [local.objects.inputs, local.objects.outputs, local.objects.sessions, local.objects.tombstones]
  }
  statement {
    sid       = "WriteTombstones"
    actions   = ["s3:PutObject"]
    resources = [local.objects.tombstones]
  }
  statement {
    sid       = "ListVersions"
    actions   = ["s3:ListBucketVersions"]
    resources = [local.bucket_arn]
  }
}

# --- console: what `clipctl console` does (see whether media is stored, never read it; replay
# and purge dead letters; check tombstones before a replay) ---
data "aws_iam_policy_document" "console" {
  source_policy_documents = [data.aws_iam_policy_document.common.json]
  statement {
    sid = "SeeStoredNotContent"
    # GetObject is what HeadObject needs; the console only asks whether an object is there
    # (a job's page says "stored" or "gone") and, for the janitor's plan, object metadata.
    actions   = ["s3:GetObject"]
    resources = [local.objects.inputs, local.objects.outputs, local.objects.sessions, local.objects.tombstones]
  }
  statement {
    sid = "DiscardDeadPhotos"
    # A purged dead letter, or one whose account may no longer run jobs, has its photo deleted.
    actions   = ["s3:DeleteObject"]
    resources = [local.objects.inputs]
  }
  statement {
    sid       = "ReadDeadLetters"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
    resources = local.dead_queue_arns
  }
  statement {
    sid       = "ReplayDeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = local.job_queue_arns
  }
}

# --- KEDA: the operator reads the job queues' depth (visible + in flight), nothing else ---
data "aws_iam_policy_document" "keda_trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${replace(var.keda_service_account, "/", ":")}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${var.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "keda" {
  statement {
    actions   = ["sqs:GetQueueAttributes"]
    resources = local.job_queue_arns
  }
}

resource "aws_iam_role" "keda" {
  name                 = "clipfleet-keda"
  assume_role_policy   = data.aws_iam_policy_document.keda_trust.json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "keda" {
  name   = "clipfleet-keda"
  role   = aws_iam_role.keda.id
  policy = data.aws_iam_policy_document.keda.json
}
