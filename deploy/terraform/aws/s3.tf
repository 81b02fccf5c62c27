# The media bucket: inputs/<account>/<job> (photos), outputs/<account>/<job>.mp4 (videos),
# sessions/<account>/<session>/… (per-session artifacts), tombstones/<account> (erased
# accounts), models/… (model files). Every object is already sealed by the services (envelope
# encryption, crates/store/SEALING.md); SSE-KMS is a second layer, TLS is required.

locals {
  # The lifecycle backstop: `clip-janitor lifecycle` generates this file from the retention
  # settings (S3 PutBucketLifecycleConfiguration JSON). The janitor deletes on time; these rules
  # catch whatever it missed, a day later.
  lifecycle_rules = jsondecode(file("${path.module}/lifecycle.json")).Rules
}

resource "aws_s3_bucket" "media" {
  # checkov:skip=CKV_AWS_18: server access logs would keep every media key (account and job ids) in a second bucket beyond the retention the janitor enforces; audit comes from CloudTrail data events and the ledger's deletion table
  # checkov:skip=CKV_AWS_144: cross-region replication would copy users' photos and videos to a second place the janitor must also purge; the policy is to keep as little as possible, once
  # checkov:skip=CKV2_AWS_62: nothing consumes bucket events: the queues carry jobs, not object notifications
  # checkov:skip=CKV_AWS_21: versioning is deliberately off (see aws_s3_bucket_versioning.media): a delete must be a delete
  bucket = var.bucket_name
}

resource "aws_s3_bucket_ownership_controls" "media" {
  bucket = aws_s3_bucket.media.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "media" {
  bucket                  = aws_s3_bucket.media.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "media" {
  bucket = aws_s3_bucket.media.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.clipfleet.arn
    }
    # One data key per bucket and period instead of a KMS call per object.
    bucket_key_enabled = true
  }
}

# Versioning: OFF. The privacy policy promises that a photo is deleted once its video exists
# and a video 24 h after it was made. With versioning on, DeleteObject only adds a delete
# marker and the bytes stay as a noncurrent version, while `head` already answers "not found":
# the janitor's verified deletion would report a deletion that did not happen. Unversioned, a
# delete is a delete. (The lifecycle still expires noncurrent versions and delete markers, in
# case versioning is ever switched on by hand.) "Disabled" is only valid for a bucket that was
# never versioned: suspending later would not purge old versions.
resource "aws_s3_bucket_versioning" "media" {
  bucket = aws_s3_bucket.media.id
  versioning_configuration {
    status = "Disabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "media" {
  # checkov:skip=CKV_AWS_300: the rules come from lifecycle.json through dynamic blocks, which checkov does not expand; each media prefix's rule aborts incomplete uploads after 1 day, and scripts/check-deploy checks that file's rules directly
  bucket = aws_s3_bucket.media.id

  dynamic "rule" {
    for_each = local.lifecycle_rules
    content {
      id     = rule.value.ID
      status = rule.value.Status

      filter {
        prefix = try(rule.value.Filter.Prefix, "")
      }

      dynamic "expiration" {
        for_each = try([rule.value.Expiration], [])
        content {
          days                         = try(expiration.value.Days, null)
          expired_object_delete_marker = try(expiration.value.ExpiredObjectDeleteMarker, null)
        }
      }

      dynamic "noncurrent_version_expiration" {
        for_each = try([rule.value.NoncurrentVersionExpiration], [])
        content {
          noncurrent_days = noncurrent_version_expiration.value.NoncurrentDays
        }
      }

      dynamic "abort_incomplete_multipart_upload" {
        for_each = try([rule.value.AbortIncompleteMultipartUpload], [])
        content {
          days_after_initiation = abort_incomplete_multipart_upload.value.DaysAfterInitiation
        }
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.media]
}

resource "aws_s3_bucket_policy" "media" {
  bucket = aws_s3_bucket.media.id
  policy = data.aws_iam_policy_document.media_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.media]
}

data "aws_iam_policy_document" "media_bucket" {
  statement {
    sid       = "DenyWithoutTls"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.media.arn, "${aws_s3_bucket.media.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
  statement {
    sid       = "DenyOtherEncryption"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.media.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    # A request may leave the header out (the bucket default applies) but not ask for another.
    condition {
      test     = "StringNotEqualsIfExists"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["aws:kms"]
    }
  }
}
