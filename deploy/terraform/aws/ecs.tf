# Compute: ECS on Fargate, one service per role of the one image (Dockerfile; built with
# --build-arg EXTRAS=s3). Chosen over an EC2 auto-scaling group because every role is already a
# container command: Fargate runs each as a service with no hosts to patch, AMIs or docker-compose
# to maintain; ECS restarts a failed task, injects the secrets, ships logs to CloudWatch, and
# registers the web tasks in the ALB by IP. `beat` runs exactly one task (never two during a
# deployment: maximum 100 %, minimum 0 %). Database migrations run as the one-off `migrate` task
# before a deployment (README).
resource "aws_ecs_cluster" "main" {
  name = local.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

locals {
  environment = [
    { name = "NEUROHUB_ENV", value = "production" },
    { name = "USE_S3", value = "true" },
    { name = "S3_BUCKET", value = aws_s3_bucket.files.id },
    { name = "AWS_REGION", value = var.region },
    { name = "TRUSTED_PROXY_HOPS", value = "1" },
    { name = "API_HOST", value = "0.0.0.0" },
    { name = "API_PORT", value = "8000" },
    { name = "PLANT_TIMEZONE", value = var.plant_timezone },
    { name = "BACKUP_RETENTION_DAYS", value = tostring(var.backup_retention_days) },
    { name = "NONCURRENT_VERSION_DAYS", value = tostring(var.noncurrent_version_days) },
    # Longer than the ALB's idle timeout (60 s): the ALB closes idle connections first.
    { name = "GUNICORN_CMD_ARGS", value = "--keep-alive 75" },
  ]
  secrets = [for k, s in aws_secretsmanager_secret.app : { name = k, valueFrom = s.arn }]
  roles = {
    web       = { command = ["web"], cpu = var.web_cpu, memory = var.web_memory, count = var.web_count, health = ["CMD", "/usr/local/bin/neurohub-entrypoint", "healthcheck"] }
    worker    = { command = ["worker"], cpu = var.worker_cpu, memory = var.worker_memory, count = 1, health = ["CMD", "neurohub", "worker-check", "--queue", "completions", "--queue", "default"] }
    worker-io = { command = ["worker-io"], cpu = var.worker_cpu, memory = var.worker_memory, count = 1, health = ["CMD", "neurohub", "worker-check", "--queue", "printing", "--queue", "io"] }
    beat      = { command = ["beat"], cpu = 256, memory = 512, count = 1, health = null }
    relay     = { command = ["relay"], cpu = 256, memory = 512, count = 1, health = null }
    migrate   = { command = ["migrate"], cpu = 256, memory = 512, count = 0, health = null }
  }
}

resource "aws_ecs_task_definition" "role" {
  #checkov:skip=CKV_AWS_336:the app writes its data folder (beat's schedule, gunicorn's control socket, dump scratch space) inside the container; firmware and backups themselves are in S3
  for_each                 = local.roles
  family                   = "${local.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions = jsonencode([merge({
    name         = each.key
    image        = var.image
    command      = each.value.command
    essential    = true
    environment  = local.environment
    secrets      = local.secrets
    stopTimeout  = 30
    portMappings = each.key == "web" ? [{ containerPort = 8000, protocol = "tcp" }] : []
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.service[each.key].name
        awslogs-region        = var.region
        awslogs-stream-prefix = each.key
      }
    }
    }, each.value.health == null ? {} : {
    healthCheck = { command = each.value.health, interval = 30, timeout = 20, retries = 3, startPeriod = 180 }
  })])
}

resource "aws_ecs_service" "role" {
  for_each                           = { for k, v in local.roles : k => v if k != "migrate" }
  name                               = each.key
  cluster                            = aws_ecs_cluster.main.id
  task_definition                    = aws_ecs_task_definition.role[each.key].arn
  desired_count                      = each.value.count
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  deployment_maximum_percent         = contains(["beat", "relay"], each.key) ? 100 : 200
  deployment_minimum_healthy_percent = contains(["beat", "relay"], each.key) ? 0 : 100
  health_check_grace_period_seconds  = each.key == "web" ? 60 : null
  propagate_tags                     = "SERVICE"

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.app.id]
    assign_public_ip = false
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  dynamic "load_balancer" {
    for_each = each.key == "web" ? [1] : []
    content {
      target_group_arn = aws_lb_target_group.web.arn
      container_name   = "web"
      container_port   = 8000
    }
  }

  depends_on = [aws_lb_listener.https]
}
