# Generated secrets, kept in Secrets Manager (KMS-encrypted) and injected into the tasks by ECS:
# no password is a literal in this code or in a variable file.
resource "random_password" "db" {
  length           = 40
  special          = true
  override_special = "-_.~"
}

resource "random_password" "redis" {
  length           = 48
  special          = true
  override_special = "-_.~"
}

resource "random_password" "secret_key" {
  length  = 64
  special = false
}

resource "random_password" "flower" {
  length  = 32
  special = false
}

locals {
  secrets = {
    # The app reads whole URLs (DATABASE_URL, REDIS_URL), so the URLs are the secrets.
    DATABASE_URL      = "postgresql+psycopg://neurohub:${random_password.db.result}@${aws_db_instance.main.address}:5432/neurohub?sslmode=require"
    REDIS_URL         = "rediss://:${random_password.redis.result}@${aws_elasticache_replication_group.main.primary_endpoint_address}:6379/0?ssl_cert_reqs=required"
    SECRET_KEY        = random_password.secret_key.result
    FLOWER_BASIC_AUTH = "ops:${random_password.flower.result}"
  }
}

resource "aws_secretsmanager_secret" "app" {
  #checkov:skip=CKV2_AWS_57:automatic rotation would change the password under running tasks whose DATABASE_URL/REDIS_URL embed it; rotate by re-applying with a new random_password (RUNBOOK) and redeploying
  for_each                = local.secrets
  name                    = "${local.name}/${each.key}"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "app" {
  for_each      = local.secrets
  secret_id     = aws_secretsmanager_secret.app[each.key].id
  secret_string = each.value
}

# The database master password alone, for operators (psql, restore drills).
resource "aws_secretsmanager_secret" "db_password" {
  #checkov:skip=CKV2_AWS_57:see aws_secretsmanager_secret.app: rotated together with DATABASE_URL
  name                    = "${local.name}/db-master-password"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "db_password" {
  secret_id     = aws_secretsmanager_secret.db_password.id
  secret_string = random_password.db.result
}
