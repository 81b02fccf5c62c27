variable "region" {
  description = "AWS region of the bucket, the queues and the cluster (the services' sqs://<region>)."
  type        = string
  default     = "eu-west-1"
}

variable "bucket_name" {
  description = "Media bucket (the services' store URL is s3://<bucket_name>)."
  type        = string
  default     = "clipfleet-media-prod"
}

variable "broker_namespace" {
  description = "Queue name prefix: the services' broker namespace (default `clip`)."
  type        = string
  default     = "clip"
}

variable "pools" {
  description = "Worker pools, as in the config file's [[pools]]: each gets a free and a paid job queue and a dead-letter queue."
  type        = list(string)
  default     = ["default"]
}

variable "max_receive_count" {
  description = "Deliveries before a job goes to its dead-letter queue: the pools' `max_deliveries`."
  type        = number
  default     = 5
}

variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider (IRSA)."
  type        = string
}

variable "oidc_issuer" {
  description = "The cluster's OIDC issuer without https:// (oidc.eks.<region>.amazonaws.com/id/<id>)."
  type        = string
}

variable "k8s_namespace" {
  description = "Namespace of clipfleet's service accounts (clip-ingest, clip-worker, clip-janitor, clip-console)."
  type        = string
  default     = "clipfleet"
}

variable "keda_service_account" {
  description = "The KEDA operator's service account, namespace/name: it reads the job queues' depth."
  type        = string
  default     = "keda/keda-operator"
}

variable "vpc_id" {
  description = "VPC of the cluster. When set, S3, SQS and STS are reached through interface endpoints in endpoint_subnet_ids, which the pods' NetworkPolicy allows (and nothing else on 443)."
  type        = string
  default     = null
}

variable "endpoint_subnet_ids" {
  description = "Private subnets for the interface endpoints (their CIDR is the overlay's endpoint ipBlock)."
  type        = list(string)
  default     = []
}

variable "cluster_cidr" {
  description = "CIDR the pods' traffic comes from (VPC CIDR with the VPC CNI): allowed to the endpoints on 443."
  type        = string
  default     = "10.0.0.0/16"
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}
