# Azure-side monitoring: a Log Analytics workspace (container logs, resource diagnostics), an
# Azure Monitor workspace (managed Prometheus) and an Azure Managed Grafana reading it. The data
# collection rules are associated with the AKS cluster: one sends Container Insights logs to Log
# Analytics, the other Prometheus metrics scraped by the managed agent (ama-metrics) to the
# Azure Monitor workspace. The in-cluster stack (monitoring/) can run beside it.

# --- Metrics: managed Prometheus, scraped by the managed agent, into the Azure Monitor workspace.
resource "azurerm_monitor_data_collection_endpoint" "this" {
  name                = "${var.name_prefix}-dce"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  kind                = "Linux"
  tags                = local.tags
}

resource "azurerm_monitor_workspace" "this" {
  name                = "${var.name_prefix}-amw"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_monitor_data_collection_rule" "prometheus" {
  name                        = "${var.name_prefix}-dcr-prometheus"
  location                    = var.location
  resource_group_name         = azurerm_resource_group.this.name
  data_collection_endpoint_id = azurerm_monitor_data_collection_endpoint.this.id
  kind                        = "Linux"
  description                 = "Prometheus metrics of the LiveOps cluster, to the Azure Monitor workspace."
  tags                        = local.tags

  destinations {
    monitor_account {
      monitor_account_id = azurerm_monitor_workspace.this.id
      name               = "amw"
    }
  }

  data_flow {
    streams      = ["Microsoft-PrometheusMetrics"]
    destinations = ["amw"]
  }

  data_sources {
    prometheus_forwarder {
      name    = "PrometheusDataSource"
      streams = ["Microsoft-PrometheusMetrics"]
    }
  }
}

# --- Logs: Container Insights to Log Analytics (retention: var.monitoring.log_retention_days).
resource "azurerm_log_analytics_workspace" "this" {
  name                = "${var.name_prefix}-law"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  sku                 = "PerGB2018"
  retention_in_days   = var.monitoring.log_retention_days
  tags                = local.tags
}

resource "azurerm_monitor_data_collection_rule" "container_insights" {
  name                = "${var.name_prefix}-dcr-ci"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  description         = "Container Insights logs of the LiveOps cluster, to Log Analytics."
  tags                = local.tags

  destinations {
    log_analytics {
      workspace_resource_id = azurerm_log_analytics_workspace.this.id
      name                  = "law"
    }
  }

  data_flow {
    streams      = ["Microsoft-ContainerInsights-Group-Default"]
    destinations = ["law"]
  }

  data_sources {
    extension {
      name           = "ContainerInsightsExtension"
      extension_name = "ContainerInsights"
      streams        = ["Microsoft-ContainerInsights-Group-Default"]
      extension_json = jsonencode({
        dataCollectionSettings = {
          interval               = "1m"
          namespaceFilteringMode = "Off"
          enableContainerLogV2   = true
        }
      })
    }
  }
}

# Both rules collect from the LiveOps cluster.
resource "azurerm_monitor_data_collection_rule_association" "this" {
  for_each = {
    prometheus = { rule_id = azurerm_monitor_data_collection_rule.prometheus.id, collects = "Managed Prometheus metrics" }
    ci         = { rule_id = azurerm_monitor_data_collection_rule.container_insights.id, collects = "Container Insights logs" }
  }

  name                    = "${var.name_prefix}-dcra-${each.key}"
  target_resource_id      = azurerm_kubernetes_cluster.this.id
  data_collection_rule_id = each.value.rule_id
  description             = "${each.value.collects} of the LiveOps cluster."
}

# Resource logs kept in Log Analytics: the AKS control plane's audit and API server logs, the
# gateway's access and WAF logs (and its metrics), and every read, write and delete of the MySQL
# dumps.
resource "azurerm_monitor_diagnostic_setting" "this" {
  for_each = {
    control-plane = { target = azurerm_kubernetes_cluster.this.id, logs = ["kube-audit-admin", "kube-apiserver", "cluster-autoscaler", "guard"], metrics = [] }
    appgw         = { target = azurerm_application_gateway.this.id, logs = ["ApplicationGatewayAccessLog", "ApplicationGatewayFirewallLog"], metrics = ["AllMetrics"] }
    blob-access   = { target = "${azurerm_storage_account.mysql_backups.id}/blobServices/default", logs = ["StorageRead", "StorageWrite", "StorageDelete"], metrics = [] }
  }

  name                       = each.key
  target_resource_id         = each.value.target
  log_analytics_workspace_id = azurerm_log_analytics_workspace.this.id

  dynamic "enabled_log" {
    for_each = each.value.logs
    content {
      category = enabled_log.value
    }
  }

  dynamic "enabled_metric" {
    for_each = each.value.metrics
    content {
      category = enabled_metric.value
    }
  }
}

resource "azurerm_dashboard_grafana" "this" {
  count = var.monitoring.grafana_enabled ? 1 : 0

  name                              = "${var.name_prefix}-grafana"
  location                          = var.location
  resource_group_name               = azurerm_resource_group.this.name
  grafana_major_version             = 11
  sku                               = "Standard"
  api_key_enabled                   = false
  deterministic_outbound_ip_enabled = false
  public_network_access_enabled     = true
  zone_redundancy_enabled           = var.monitoring.zone_redundant
  tags                              = local.tags

  identity {
    type = "SystemAssigned"
  }

  azure_monitor_workspace_integrations {
    resource_id = azurerm_monitor_workspace.this.id
  }
}

# Grafana reads metrics from the Azure Monitor workspace and logs from Log Analytics.
resource "azurerm_role_assignment" "grafana_readers" {
  for_each = {
    for role, scope in {
      "Monitoring Data Reader" = azurerm_monitor_workspace.this.id
      "Log Analytics Reader"   = azurerm_log_analytics_workspace.this.id
    } : role => scope if var.monitoring.grafana_enabled
  }

  scope                = each.value
  role_definition_name = each.key
  principal_id         = azurerm_dashboard_grafana.this[0].identity[0].principal_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_role_assignment" "grafana_admins" {
  for_each = var.monitoring.grafana_enabled ? toset(var.monitoring.grafana_admin_object_ids) : toset([])

  scope                = azurerm_dashboard_grafana.this[0].id
  role_definition_name = "Grafana Admin"
  principal_id         = each.value
}
