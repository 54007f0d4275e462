output "alb_dns_name" {
  description = "Point the stations' host name (Route 53 alias / CNAME) here"
  value       = aws_lb.main.dns_name
}

output "bucket" {
  description = "S3_BUCKET"
  value       = aws_s3_bucket.files.id
}

output "rds_endpoint" {
  description = "RDS PostgreSQL address (private)"
  value       = aws_db_instance.main.address
}

output "redis_primary_endpoint" {
  description = "ElastiCache primary endpoint (private, TLS)"
  value       = aws_elasticache_replication_group.main.primary_endpoint_address
}

output "database_url_secret_arn" {
  description = "Secrets Manager secret holding DATABASE_URL (runbook: `aws secretsmanager get-secret-value`)"
  value       = aws_secretsmanager_secret.app["DATABASE_URL"].arn
}

output "ecs_cluster" {
  description = "ECS cluster of the services web, worker, worker-io, beat, relay"
  value       = aws_ecs_cluster.main.name
}

output "migrate_task_definition" {
  description = "Run once before each deployment: aws ecs run-task --task-definition …"
  value       = aws_ecs_task_definition.role["migrate"].arn
}

output "private_subnet_ids" {
  description = "Subnets for `aws ecs run-task` (migrate)"
  value       = aws_subnet.private[*].id
}

output "app_security_group_id" {
  description = "Security group for `aws ecs run-task` (migrate)"
  value       = aws_security_group.app.id
}
