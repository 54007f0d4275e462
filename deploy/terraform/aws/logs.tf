# CloudWatch log groups: one per ECS service (and the one-off migrate task), the VPC flow log.
locals {
  services = ["web", "worker", "worker-io", "beat", "relay", "migrate"]
}

resource "aws_cloudwatch_log_group" "service" {
  for_each          = toset(local.services)
  name              = "/neurohub/${var.environment}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_cloudwatch_log_group" "flow" {
  name              = "/neurohub/${var.environment}/vpc-flow"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}
