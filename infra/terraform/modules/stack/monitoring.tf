# Azure-side monitoring: a Log Analytics workspace (container logs, resource diagnostics), an
# Azure Monitor workspace (managed Prometheus) and an Azure Managed Grafana reading it. The data
# collection rules are associated with the AKS cluster: one sends Container Insights logs to Log
# Analytics, the other Prometheus metrics scraped by the managed agent (ama-metrics) to the
# Azure Monitor workspace. The in-cluster stack (monitoring/) can run beside it. Azure Monitor
# metric alerts on the Service Bus namespace, mailed through one action group, stand in for the
# bus_lag alerts, which cannot fire on Service Bus (at the end of this file).

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

# --- Alerts: Azure Monitor metric alerts. Warnings (severity 2 and up) go to the action group
# <name_prefix>-alerts, which mails var.monitoring.alert_email_addresses; critical alerts
# (severity 0-1, "pager" in docs/OPERATIONS.md) to <name_prefix>-pager, which mails the same
# addresses and, when var.monitoring.alert_pager_webhook_url is set, calls the pager's webhook.
# On Service Bus (BUS_KIND=servicebus) the bus adapter cannot read a group's lag over AMQP: the
# bus_lag gauge is absent, so LiveOpsBusLagGrowing and LiveOpsConsumerStalled (monitoring/) can
# never fire. These alerts on the namespace's own metrics stand in for them (docs/OPERATIONS.md,
# "Bus lag" and "Consumer stalled"). Azure Monitor counts messages per queue or topic (dimension
# EntityName), not per subscription: a topic's ActiveMessages is what its subscriptions hold
# together, so events.accepted's two groups (progression, leaderboard) share one series, and a
# topic is "stalled" only when no subscription of it receives anything.
resource "azurerm_monitor_action_group" "this" {
  name                = "${var.name_prefix}-alerts"
  resource_group_name = azurerm_resource_group.this.name
  short_name          = substr("liveops-${var.environment}", 0, 12)
  tags                = local.tags

  dynamic "email_receiver" {
    for_each = var.monitoring.alert_email_addresses
    content {
      name                    = "email-${email_receiver.key}"
      email_address           = email_receiver.value
      use_common_alert_schema = true
    }
  }
}

resource "azurerm_monitor_action_group" "pager" {
  name                = "${var.name_prefix}-pager"
  resource_group_name = azurerm_resource_group.this.name
  short_name          = substr("lo-page-${var.environment}", 0, 12)
  tags                = local.tags

  dynamic "email_receiver" {
    for_each = var.monitoring.alert_email_addresses
    content {
      name                    = "email-${email_receiver.key}"
      email_address           = email_receiver.value
      use_common_alert_schema = true
    }
  }

  dynamic "webhook_receiver" {
    for_each = var.monitoring.alert_pager_webhook_url == "" ? [] : [var.monitoring.alert_pager_webhook_url]
    content {
      name                    = "pager"
      service_uri             = webhook_receiver.value
      use_common_alert_schema = true
    }
  }
}

locals {
  # Azure evaluates a rule every `frequency`, over the last `window_size` (which must be longer).
  alert_frequency = { PT5M = "PT1M", PT15M = "PT5M", PT30M = "PT5M", PT1H = "PT15M" }

  # The topics some consumer group reads (events.flagged has no subscription: nothing waits there).
  servicebus_consumed_topics = sort(distinct(values(local.servicebus_subscriptions)))

  # One metric alert per entry, named <name_prefix>-sb-<key>. Severity: 1 is critical in
  # docs/OPERATIONS.md (paged: action group pager), 2 warning (mailed: action group this).
  # A criterion's entity is the EntityName it watches:
  # "*" splits the rule into one alert per queue or topic, null watches the namespace as a whole.
  # Several criteria must all hold, on one named entity each (Azure allows no "*" with several).
  servicebus_alerts = merge(
    {
      backlog = {
        severity    = 2
        window      = var.monitoring.servicebus_alerts.backlog_window
        description = "Stands in for LiveOpsBusLagGrowing on Service Bus: a topic's active messages (its subscriptions together) stayed above ${var.monitoring.servicebus_alerts.backlog_messages} for the whole window; consumers are slower than the gateway. Runbook: docs/OPERATIONS.md#bus-lag."
        criteria = [
          { metric = "ActiveMessages", aggregation = "Minimum", operator = "GreaterThan", threshold = var.monitoring.servicebus_alerts.backlog_messages, entity = "*" },
        ]
      }
      dead-letters = {
        severity    = 2
        window      = "PT5M"
        description = "Dead-lettered messages wait on a topic's subscriptions (delivered ${local.servicebus_max_delivery_count} times without success, or expired). Runbook: docs/OPERATIONS.md#dead-letters."
        criteria = [
          { metric = "DeadletteredMessages", aggregation = "Maximum", operator = "GreaterThan", threshold = 0, entity = "*" },
        ]
      }
      server-errors = {
        severity    = 2
        window      = var.monitoring.servicebus_alerts.errors_window
        description = "More than ${var.monitoring.servicebus_alerts.server_errors} Service Bus requests failed with a server error within the window. Runbook: docs/OPERATIONS.md#service-bus-errors."
        criteria = [
          { metric = "ServerErrors", aggregation = "Total", operator = "GreaterThan", threshold = var.monitoring.servicebus_alerts.server_errors, entity = null },
        ]
      }
      throttled = {
        severity    = 2
        window      = var.monitoring.servicebus_alerts.errors_window
        description = "More than ${var.monitoring.servicebus_alerts.throttled_requests} Service Bus requests were throttled within the window; while throttled the namespace reports message counts as 0, so the backlog and stalled alerts cannot see. Runbook: docs/OPERATIONS.md#service-bus-errors."
        criteria = [
          { metric = "ThrottledRequests", aggregation = "Total", operator = "GreaterThan", threshold = var.monitoring.servicebus_alerts.throttled_requests, entity = null },
        ]
      }
    },
    {
      for topic in local.servicebus_consumed_topics : "stalled-${topic}" => {
        severity    = 1
        window      = var.monitoring.servicebus_alerts.stalled_window
        description = "Stands in for LiveOpsConsumerStalled on Service Bus: messages wait on ${topic} and none was received from it for the whole window; its consumers (${join(", ", sort([for group, t in local.servicebus_subscriptions : group if t == topic]))}) have stopped. Runbook: docs/OPERATIONS.md#consumer-stalled."
        criteria = [
          { metric = "ActiveMessages", aggregation = "Minimum", operator = "GreaterThan", threshold = 0, entity = topic },
          { metric = "OutgoingMessages", aggregation = "Total", operator = "LessThanOrEqual", threshold = 0, entity = topic },
        ]
      }
    },
  )
}

resource "azurerm_monitor_metric_alert" "servicebus" {
  for_each = local.servicebus_alerts

  name                = "${var.name_prefix}-sb-${each.key}"
  resource_group_name = azurerm_resource_group.this.name
  scopes              = [azurerm_servicebus_namespace.this.id]
  description         = each.value.description
  severity            = each.value.severity
  window_size         = each.value.window
  frequency           = local.alert_frequency[each.value.window]
  auto_mitigate       = true
  tags                = local.tags

  dynamic "criteria" {
    for_each = each.value.criteria
    content {
      metric_namespace = "Microsoft.ServiceBus/namespaces"
      metric_name      = criteria.value.metric
      aggregation      = criteria.value.aggregation
      operator         = criteria.value.operator
      threshold        = criteria.value.threshold

      dynamic "dimension" {
        for_each = criteria.value.entity == null ? [] : [criteria.value.entity]
        content {
          name     = "EntityName"
          operator = "Include"
          values   = [dimension.value]
        }
      }
    }
  }

  # Critical (0-1) pages; warnings are mailed.
  action {
    action_group_id = each.value.severity <= 1 ? azurerm_monitor_action_group.pager.id : azurerm_monitor_action_group.this.id
  }
}
