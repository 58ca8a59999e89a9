# The outputs below feed the Kustomize overlay through
# infra/terraform/scripts/outputs-to-kustomize.sh <env> (see infra/terraform/README.md).

output "acr_login_server" {
  description = "Registry login server (image prefix)."
  value       = module.stack.registry.login_server
}

output "workload_identity_client_id" {
  description = "Client ID of the LiveOps workload identity (ServiceAccount annotation, SecretProviderClass clientID)."
  value       = module.stack.aks.workload_identity_client_id
}

output "tenant_id" {
  description = "Entra ID tenant of the Key Vault (SecretProviderClass tenantId)."
  value       = module.stack.key_vault.tenant_id
}

output "key_vault_name" {
  description = "Key Vault name (SecretProviderClass keyvaultName)."
  value       = module.stack.key_vault.name
}

output "key_vault_secret_names" {
  description = "Secrets LiveOps reads from the vault."
  value       = module.stack.key_vault.secret_names
}

output "redis_host" {
  description = "Redis host name (TLS port 6380)."
  value       = module.stack.redis.hostname
}

output "redis_ssl_port" {
  description = "Redis TLS port."
  value       = module.stack.redis.ssl_port
}

output "redis_replicas" {
  description = "Replicas per primary of the cache: set BUS_REDIS_REPLICAS to it when the bus is on Redis (bus-redis), so that every 202 survives a failover."
  value       = module.stack.redis.replicas
}

output "postgres_fqdn" {
  description = "PostgreSQL primary FQDN."
  value       = module.stack.postgres.fqdn
}

output "postgres_replica_fqdn" {
  description = "PostgreSQL read replica FQDN."
  value       = module.stack.postgres.replica_fqdn
}

output "servicebus_namespace" {
  description = "Service Bus namespace name."
  value       = module.stack.servicebus.namespace
}

output "servicebus_endpoint" {
  description = "Service Bus namespace host."
  value       = module.stack.servicebus.endpoint
}

output "servicebus_topics" {
  description = "Service Bus topics."
  value       = module.stack.servicebus.topics
}

output "servicebus_subscriptions" {
  description = "Service Bus subscription (consumer group) per topic."
  value       = module.stack.servicebus.subscriptions
}

output "mysql_private_ip" {
  description = "Private address of the MySQL VM."
  value       = module.stack.mysql.private_ip
}

output "mysql_backup_container_url" {
  description = "Blob container with the MySQL dumps."
  value       = module.stack.mysql.backup_container_url
}

output "app_gateway_id" {
  description = "Application Gateway managed by AGIC."
  value       = module.stack.gateway.id
}

output "app_gateway_public_ip" {
  description = "Public address of the game API."
  value       = module.stack.gateway.public_ip
}

output "waf_policy_id" {
  description = "WAF policy of the gateway."
  value       = module.stack.gateway.waf_policy_id
}

output "appgw_subnet_cidr" {
  description = "Address range of the Application Gateway subnet (the source of ingress traffic to the pods)."
  value       = module.stack.network.subnet_cidrs.appgw
}

output "data_subnet_cidr" {
  description = "Address range of the private endpoints (Redis, PostgreSQL, Service Bus, Key Vault, registry, blob)."
  value       = module.stack.network.subnet_cidrs.data
}

output "vm_subnet_cidr" {
  description = "Address range of the MySQL VM's subnet."
  value       = module.stack.network.subnet_cidrs.vm
}

output "aks_cluster_name" {
  description = "AKS cluster name (az aks get-credentials)."
  value       = module.stack.aks.name
}

output "aks_oidc_issuer_url" {
  description = "OIDC issuer of the cluster."
  value       = module.stack.aks.oidc_issuer_url
}

output "resource_group_name" {
  description = "Resource group of the environment."
  value       = module.stack.resource_group_name
}

output "log_analytics_workspace_id" {
  description = "Log Analytics workspace."
  value       = module.stack.monitoring.log_analytics_workspace_id
}

output "prometheus_query_endpoint" {
  description = "Managed Prometheus query endpoint."
  value       = module.stack.monitoring.prometheus_query_endpoint
}

output "grafana_endpoint" {
  description = "Managed Grafana URL."
  value       = module.stack.monitoring.grafana_endpoint
}
