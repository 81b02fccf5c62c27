# Interface endpoints for S3, SQS and STS (IRSA's AssumeRoleWithWebIdentity) in private subnets:
# the pods' only way out on 443 is to these addresses (overlays/aws NetworkPolicy), so a
# worker holding a decrypted photo cannot reach any other HTTPS service. Created when vpc_id
# is set.

locals {
  endpoint_services = var.vpc_id == null ? toset([]) : toset(["s3", "sqs", "sts"])
}

resource "aws_security_group" "endpoints" {
  count       = var.vpc_id == null ? 0 : 1
  name        = "clipfleet-endpoints"
  description = "HTTPS from the cluster to the S3, SQS and STS interface endpoints"
  vpc_id      = var.vpc_id

  ingress {
    description = "HTTPS from pods"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = [var.cluster_cidr]
  }
}

resource "aws_vpc_endpoint" "interface" {
  for_each            = local.endpoint_services
  vpc_id              = var.vpc_id
  service_name        = "com.amazonaws.${var.region}.${each.value}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = var.endpoint_subnet_ids
  security_group_ids  = [aws_security_group.endpoints[0].id]
  private_dns_enabled = true

  # S3's private DNS name resolves to the endpoint only with this set for the interface type.
  dynamic "dns_options" {
    for_each = each.value == "s3" ? [1] : []
    content {
      private_dns_only_for_inbound_resolver_endpoint = false
    }
  }
}
