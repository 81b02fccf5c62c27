# One customer-managed key for the media bucket (SSE-KMS, under the app's own sealing) and the
# queues (SSE). The services never call KMS themselves: S3 and SQS do, on their behalf, which
# the roles' kms:ViaService conditions pin down (iam.tf).
resource "aws_kms_key" "clipfleet" {
  description             = "clipfleet: media bucket and queues"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "clipfleet" {
  name          = "alias/clipfleet"
  target_key_id = aws_kms_key.clipfleet.key_id
}

data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_109: a key policy's Resource "*" means this key; the account root keeps administration so the key can never become unmanageable
  # checkov:skip=CKV_AWS_111: same: "*" in a key policy is the key itself
  # checkov:skip=CKV_AWS_356: same: "*" in a key policy is the key itself
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
  statement {
    sid       = "ServicesUseForQueues"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["sqs.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}
