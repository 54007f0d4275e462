# ElastiCache Redis 7: a replication group (primary + replica in another AZ, automatic failover).
# The seed's aws_elasticache_cluster with num_cache_nodes = 2 is invalid for Redis (Memcached
# only); a replication group is how Redis gets a second node.
resource "aws_elasticache_subnet_group" "main" {
  name       = local.name
  subnet_ids = aws_subnet.private[*].id
}

resource "aws_elasticache_replication_group" "main" {
  replication_group_id       = "${local.name}-redis"
  description                = "NeuroHub MES broker and rate limits"
  engine                     = "redis"
  engine_version             = "7.1"
  node_type                  = var.cache_node_type
  num_cache_clusters         = 2
  parameter_group_name       = "default.redis7"
  port                       = 6379
  automatic_failover_enabled = true
  multi_az_enabled           = true
  subnet_group_name          = aws_elasticache_subnet_group.main.name
  security_group_ids         = [aws_security_group.cache.id]
  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.main.arn
  transit_encryption_enabled = true
  auth_token                 = random_password.redis.result
  snapshot_retention_limit   = 7
  snapshot_window            = "16:00-17:00"
  auto_minor_version_upgrade = true
  apply_immediately          = false
}
