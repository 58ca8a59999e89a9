# What an environment publishes (envs/outputs.tf): names, addresses and IDs, never a
# secret; the secrets are written to Key Vault only.

output "resource_group_name" {
  description = "Resource group of the environment."
  value       = azurerm_resource_group.this.name
}

output "network" {
  description = "Address ranges of the subnets by tier: aks, data (private endpoints), appgw, vm."
  value       = { subnet_cidrs = local.subnets }
}

output "registry" {
  description = "Login server of the registry, the image name prefix."
  value       = { login_server = azurerm_container_registry.this.login_server }
}

output "aks" {
  description = "The cluster's name and OIDC issuer, and the client ID of the LiveOps workload identity."
  value = {
    name                        = azurerm_kubernetes_cluster.this.name
    oidc_issuer_url             = azurerm_kubernetes_cluster.this.oidc_issuer_url
    workload_identity_client_id = azurerm_user_assigned_identity.this["liveops-workload"].client_id
  }
}

output "gateway" {
  description = "The Application Gateway AGIC manages, its public address and its WAF policy."
  value = {
    id            = azurerm_application_gateway.this.id
    public_ip     = azurerm_public_ip.this["appgw"].ip_address
    waf_policy_id = azurerm_web_application_firewall_policy.this.id
  }
}

output "key_vault" {
  description = "The vault's name and tenant, and the secrets LiveOps reads from it."
  value = {
    name         = azurerm_key_vault.this.name
    tenant_id    = azurerm_key_vault.this.tenant_id
    secret_names = sort(keys(local.liveops_secrets))
  }
}

output "redis" {
  description = "Host name and TLS port of the cache, and its replicas per primary (Basic 0, Standard 1, Premium replicas_per_primary): BUS_REDIS_REPLICAS of the bus-redis component."
  value = {
    hostname = azurerm_redis_cache.this.hostname
    ssl_port = azurerm_redis_cache.this.ssl_port
    replicas = var.redis.sku_name == "Basic" ? 0 : (local.redis_premium ? var.redis.replicas_per_primary : 1)
  }
}

output "postgres" {
  description = "FQDNs of the PostgreSQL primary and of its read replica (empty without one)."
  value = {
    fqdn         = azurerm_postgresql_flexible_server.this.fqdn
    replica_fqdn = var.postgres.read_replica ? azurerm_postgresql_flexible_server.replica[0].fqdn : ""
  }
}

output "servicebus" {
  description = "The Service Bus namespace, its host, its topics and the topic of each subscription (consumer group)."
  value = {
    namespace     = azurerm_servicebus_namespace.this.name
    endpoint      = "${azurerm_servicebus_namespace.this.name}.servicebus.windows.net"
    topics        = sort(keys(azurerm_servicebus_topic.this))
    subscriptions = local.servicebus_subscriptions
  }
}

output "mysql" {
  description = "Private address of the MySQL VM and the blob container of its dumps."
  value = {
    private_ip           = azurerm_network_interface.mysql.private_ip_address
    backup_container_url = "${azurerm_storage_account.mysql_backups.primary_blob_endpoint}${azurerm_storage_container.mysql_backups.name}"
  }
}

output "monitoring" {
  description = "The Log Analytics workspace, the managed Prometheus query endpoint and the managed Grafana URL (empty without one)."
  value = {
    log_analytics_workspace_id = azurerm_log_analytics_workspace.this.id
    prometheus_query_endpoint  = azurerm_monitor_workspace.this.query_endpoint
    grafana_endpoint           = var.monitoring.grafana_enabled ? azurerm_dashboard_grafana.this[0].endpoint : ""
  }
}
