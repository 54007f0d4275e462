variable "region" {
  description = "AWS region (the seed: Seoul)"
  type        = string
  default     = "ap-northeast-2"
}

variable "environment" {
  description = "Name suffix and tag: prod, staging"
  type        = string
  default     = "prod"
}

variable "vpc_cidr" {
  description = "CIDR of the VPC"
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "Availability zones used, named (a public and a private subnet in each); Multi-AZ needs 2"
  type        = list(string)
  default     = ["ap-northeast-2a", "ap-northeast-2c"]
}

variable "certificate_arn" {
  description = "ACM certificate of the HTTPS listener (the stations' host name)"
  type        = string
}

variable "image" {
  description = "The image (Dockerfile at the root, built with --build-arg EXTRAS=s3) in ECR"
  type        = string
}

variable "bucket_name" {
  description = "S3 bucket for firmware/ and backups/ (S3_BUCKET)"
  type        = string
}

variable "plant_timezone" {
  description = "PLANT_TIMEZONE of every process"
  type        = string
  default     = "Asia/Seoul"
}

variable "db_instance_class" {
  description = "RDS instance class (the seed: db.t3.large)"
  type        = string
  default     = "db.t3.large"
}

variable "db_allocated_storage" {
  description = "RDS storage in GB"
  type        = number
  default     = 100
}

variable "cache_node_type" {
  description = "ElastiCache node type (the seed: cache.t3.medium)"
  type        = string
  default     = "cache.t3.medium"
}

variable "web_count" {
  description = "Web tasks behind the ALB (the seed: 2)"
  type        = number
  default     = 2
}

variable "web_cpu" {
  description = "Fargate CPU units of a web task"
  type        = number
  default     = 1024
}

variable "web_memory" {
  description = "Fargate memory (MiB) of a web task"
  type        = number
  default     = 2048
}

variable "worker_cpu" {
  description = "Fargate CPU units of a worker, beat or relay task"
  type        = number
  default     = 512
}

variable "worker_memory" {
  description = "Fargate memory (MiB) of a worker, beat or relay task"
  type        = number
  default     = 1024
}

# Kept equal to the app's settings of the same names: the daily lifecycle task
# (web/services/backups/lifecycle.py) writes the same rules into the bucket (tests/deploy/ check it).
variable "backup_retention_days" {
  description = "BACKUP_RETENTION_DAYS: backups/ objects expire after this many days"
  type        = number
  default     = 30
}

variable "noncurrent_version_days" {
  description = "NONCURRENT_VERSION_DAYS: noncurrent versions of backups/ kept this long"
  type        = number
  default     = 30
}

variable "log_retention_days" {
  description = "CloudWatch log retention"
  type        = number
  default     = 365
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the KMS key can be deleted"
  type        = number
  default     = 30
}

variable "plant_cidr" {
  description = "The plant's network over the site-to-site VPN: label printers (port 9100)"
  type        = string
  default     = "192.168.1.0/24"
}
